"""The small trained network the benchmarks read real features from.

conv16-pool-conv32-GAP-Dense(32, relu) trained with Adam(2e-3) on 2,000
Fashion-MNIST training images (needs Debian's `dataset-fashion-mnist`): the
features of `class_measures.py`'s `accuracy` table and of `sample_size.py`.
"""


def trained_convnet(metrics=("accuracy",), epochs=12, seed=0):
    """`(model, x_train, y_train)`: a `CollapseClassifier` fitted `epochs` epochs."""
    import keras

    from keras_nc.models import CollapseClassifier
    from recipes.data import load_dataset

    data = load_dataset("fashion_mnist", samples_per_class=200, seed=seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(data.x_train.shape[1:])
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(32, activation="relu")(x)
    model = CollapseClassifier(keras.Model(inputs, features), 10)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), metrics=list(metrics))
    model.fit(data.x_train, data.y_train, batch_size=64, epochs=epochs, verbose=0)
    return model, data.x_train, data.y_train
