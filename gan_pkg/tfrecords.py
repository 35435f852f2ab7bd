"""Write any data gan_pkg reads as TFRecord files of tf.Example, the input TFX's
ImportExampleGen takes (feature spec: gan_pkg.records), with PNG `image` and `label`
where the data has labels:

    python -m gan_pkg.tfrecords --data shapes/ examples/
    -> examples/Split-train/data_tfrecord-00000-of-00001.gz, examples/Split-eval/data_tfrecord-00000-of-00001.gz
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np

from gan_pkg import files as files_lib
from gan_pkg.config import RESIZE_MODES, GANConfig
from gan_pkg.dataset import Data, DataError
from gan_pkg.records import (  # noqa: F401  (re-exported: the reader's names, beside the writer)
    EVAL_SPLIT,
    FILE_NAME,
    GZIP_MAGIC,
    IMAGE,
    LABEL,
    SPEC,
    TRAIN_SPLIT,
    WRITER_PRESET,
    is_tfrecord_source,
    load_records,
    record_files,
    survey_records,
)


# -- writing ------------------------------------------------------------------
def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W, 1|3] -> PNG bytes (lossless: the pixels read back exactly)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def example_bytes(image: np.ndarray, label: int | None = None) -> bytes:
    """One serialized tf.Example of the spec: PNG `image`, and int64 `label` when given."""
    import tensorflow as tf

    feature = {IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png_bytes(image)]))}
    if label is not None:
        feature[LABEL] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path: str | os.PathLike, images: np.ndarray, labels=None, compressed: bool = True) -> Path:
    """One tf.Example per image into the TFRecord file `path` (gzip unless `compressed` is
    False), written under a hidden temporary name and renamed, so no reader sees half a file."""
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compressed else "")
    with files_lib.atomic_path(path) as temporary:
        with tf.io.TFRecordWriter(str(temporary), options=options) as writer:
            for index, image in enumerate(images):
                writer.write(example_bytes(image, None if labels is None else labels[index]))
    return path


def write_examples(data: Data, out: str | os.PathLike) -> tuple[Path, Path]:
    """ImportExampleGen's layout in `out`: data.train in Split-train, data.holdout in Split-eval.
    Refuses split folders that already hold files: their records would mix with these."""
    out = Path(out)
    for split_name in (TRAIN_SPLIT, EVAL_SPLIT):
        folder = out / split_name
        if folder.is_dir() and any(folder.iterdir()):
            raise DataError(f"{folder}: already holds files; pick an empty output folder (or remove it)")
    return (write_records(out / TRAIN_SPLIT / FILE_NAME, data.train, data.train_labels),
            write_records(out / EVAL_SPLIT / FILE_NAME, data.holdout, data.holdout_labels))


def _labels_text(data: Data) -> str:
    if data.train_labels is None:
        return "no labels"
    classes = int(max(data.train_labels.max(), -1 if data.holdout_labels is None else data.holdout_labels.max())) + 1
    names = f" ({', '.join(data.class_names)})" if data.class_names else ""
    return f"labels 0..{classes - 1}{names}"


def main(argv=None) -> int:
    """python -m gan_pkg.tfrecords --data SOURCE OUT (TensorFlow is imported once the flags are good)."""
    from gan_pkg.cli import ArgumentParser, import_tensorflow_quietly

    parser = ArgumentParser(prog="python -m gan_pkg.tfrecords", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the Examples folder to write (Split-train/, Split-eval/)")
    parser.add_argument("--data", required=True, help="anything --data takes: a named data set, a .npz, an image folder, TFRecords")
    parser.add_argument("--image-size", type=int, metavar="N", help="write NxN images (default: the data's own short side)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB) (default: RGB when the data has colour)")
    parser.add_argument("--resize", choices=RESIZE_MODES, help="how images of another shape are fitted (default: center-crop)")
    parser.add_argument("--background", metavar="COLOUR", help="what transparent pixels are composited onto: white, black, grey or #rrggbb (default: white)")
    parser.add_argument("--holdout", type=int, metavar="N", help="examples in Split-eval (default: gan_pkg's held-out count)")
    args = parser.parse_args(argv)
    if args.holdout is not None and args.holdout < 1:
        parser.error("--holdout must be at least 1")
    flags = {"data": args.data, "image_size": args.image_size, "channels": args.channels, "resize": args.resize, "background": args.background,
             "holdout": args.holdout}
    import_tensorflow_quietly()
    try:
        config = GANConfig.resolve(WRITER_PRESET, {key: value for key, value in flags.items() if value is not None})
        from gan_pkg.plan import plan

        planned = plan(config, log=lambda *_: None)
        train_path, eval_path = write_examples(planned.data, args.out)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data, shape = planned.data, "×".join(str(v) for v in planned.config.image_shape)
    print(f"wrote {len(data.train):,} training and {len(data.holdout):,} held-out examples ({shape}, {_labels_text(data)}) "
          f"to {train_path} and {eval_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
