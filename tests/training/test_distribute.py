"""The GAN under tf.distribute: two CPU replicas in one process (a subprocess,
since logical devices must be configured before TensorFlow starts)."""

import json
import textwrap

from conftest import run_python

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from gan_pkg import data, training
    from tiny import tiny
    cfg = tiny("dcgan")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = training.build_gan(cfg)
    noise = strategy.run(model.sample_noise, args=(4,))
    per_replica = [np.array(t) for t in strategy.experimental_local_results(noise)]
    history = model.fit(data.training_dataset(data.load(cfg), cfg), steps_per_epoch=3, epochs=1, verbose=0)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "same_noise": bool(np.allclose(per_replica[0], per_replica[1])),
        "losses_finite": bool(np.isfinite([history.history[k][-1] for k in ("d_loss", "g_loss")]).all()),
        "steps": int(model.g_optimizer.iterations.numpy()),
    }))
    """
)


def test_mirrored_strategy_trains_with_distinct_noise_per_replica():
    result = run_python("-c", SCRIPT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["same_noise"] is False
    assert report["steps"] == 3
    assert report["losses_finite"] is True  # neither NaN nor inf
