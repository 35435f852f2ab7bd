"""Names shared by the exporter, the server, the client and TF Serving.

Defined once here and imported everywhere (serving/ and tuning/ included);
importing this module loads neither TensorFlow nor Keras.
"""

DEFAULT_EXPORT_BASE = "export"
DEFAULT_MODEL_NAME = "gan"

# Signatures and their tensor keys (docs/ARCHITECTURE.md, "Contracts").
SERVING_DEFAULT = "serving_default"  # noise -> images | samples
GENERATE = "generate"  # seed -> images | samples, noise
GENERATE_PNG = "generate_png"  # seed -> png (image presets only)

NOISE = "noise"  # float32 [batch, latent_dim]
SEED = "seed"  # int64 [batch]; row i depends only on seed[i]
IMAGES = "images"  # float32 [batch, H, W, C] in [0, 1]
SAMPLES = "samples"  # float32 [batch, n] (1-D presets)
PNG = "png"  # string [batch], encoded PNG

# Files TF Serving (or we) read next to saved_model.pb.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "gan_pkg.json"

GRPC_PORT = 8500
REST_PORT = 8501
