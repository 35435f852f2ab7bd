"""keras-tuner search over the GAN presets: `python tuning/search.py` (or `gan-search`)."""
