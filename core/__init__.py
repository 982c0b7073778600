"""What every package of the suite uses: the one exception users see (errors.py) and the run configuration
(config.py). Both import nothing of the suite, so everything may import them."""
