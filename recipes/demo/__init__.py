"""A short demonstration of the keras_nc metrics on scikit-learn's digits."""
