"""hashsdk.train: GAN-regularized deep hashing training (needs the ``train`` extra)."""
