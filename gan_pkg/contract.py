"""Names shared by the exporter, the server, the client and TF Serving.

Defined once here and imported everywhere (serving/ and tuning/ included);
importing this module loads neither TensorFlow nor Keras.
"""

DEFAULT_EXPORT_BASE = "export"
DEFAULT_MODEL_NAME = "gan"

# Signatures and their tensor keys (docs/ARCHITECTURE.md, "Contracts").
SERVING_DEFAULT = "serving_default"  # noise -> images | samples
GENERATE = "generate"  # seed -> images | samples, noise
GENERATE_PNG = "generate_png"  # seed -> png_bytes (image presets only)

NOISE = "noise"  # float32 [batch, latent_dim]
SEED = "seed"  # int64 [batch]; row i depends only on seed[i]
LABEL = "label"  # int64 [batch] in [0, num_classes): every signature of a conditional export
IMAGES = "images"  # float32 [batch, H, W, C] in [0, 1]
SAMPLES = "samples"  # float32 [batch, n] (1-D presets)
# string [batch], encoded PNG. TF Serving's REST API base64-encodes a string output only
# when its name ends in "_bytes"; other strings go out as raw text.
PNG = "png_bytes"
LEGACY_PNG = "png"  # what exports of contract 1 named it
BYTES_SUFFIX = "_bytes"

# The export contract gan_pkg.json records: 2 since the PNG output is `png_bytes`.
EXPORT_CONTRACT = 2



def label_range_message(num_classes: int) -> str:
    """What both servers say about an out-of-range label (the export's Assert op carries it)."""
    return f"label must be an integer in [0, {num_classes}) (num_classes={num_classes})"


# Files TF Serving (or we) read next to saved_model.pb.
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
METADATA_FILE = "gan_pkg.json"

GRPC_PORT = 8500
REST_PORT = 8501

# Version folders: <base>/<model_name>/<version>/.
MAX_VERSION = 2**63 - 1  # versions are int64 in every TF Serving message


def version_of(name: str) -> int | None:
    """A version folder's name -> its version, or None if it names none: ASCII digits only
    (str.isdigit alone also accepts '²' and '３'), leading zeros allowed (TF Serving reads
    '007' as 7), and no larger than int64 (a bigger number cannot be named in any request)."""
    if not (name.isascii() and name.isdigit()):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None
