"""One module per detector family, each with `build(spec, weights, threshold) -> Detector`.

The catalogue row (models/zoo.py, `ModelInfo.loader`) names the module; zoo.build_detector checks
the model string, resolves the weights and calls it. A new detector family is a module here and a
row there.
"""
