"""Data: where each data set comes from (TFDS or a hash-pinned offline mirror) and the tf.data input pipeline."""
