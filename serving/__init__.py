"""Embedded TF-Serving-compatible model server (gRPC + REST) and client for gan_pkg exports.

Laid out like tensorflow_serving/model_servers; each module depends only on those above it:

    errors       ServingError, gRPC status -> HTTP status, as_serving_error
    validation   one keys/dtype/shape/batch check, for arrays and for TensorProto headers
    servable     Servable: one version loaded and run through gan_pkg.session_loader
    batching     Batcher: concurrent requests merged along dimension 0
    monitoring   Metrics: Prometheus request counts and latencies
    repository   Model: versions on disk, version policy, allowed model roots
    core         ModelServer: models, polling, warmup, Predict / metadata / status
    grpc_api     TF Serving's gRPC services, channel arguments, TLS
    rest_json    TF Serving's REST JSON formats, decoded strictly and encoded with orjson
    rest_api     TF Serving's REST API and the metrics endpoint, on aiohttp
    main         the tensorflow_model_server-style flags and the process (python -m serving)

protos (config messages the tensorflow-serving-api wheel lacks) and client (the client
library and CLI) stand apart. Importing the package loads nothing.
"""
