"""One module per embedder, each with `build(spec, model, weights) -> Embedder`: sface_int8 (OpenCV
DNN) and dlib ship offline; `network` builds the others from weights files, through onnx_network
(ONNX Runtime, every family) or iresnet_torch (PyTorch, insightface IResNet `.pth`).

The catalogue row (models/zoo.py, `ModelInfo.loader`) names the module; zoo.build_embedder checks
the model string, resolves the weights and calls it. A new embedder family is a module here and a
row there.

Each family's preprocessing is written down once, as a `Preprocessing` (models/preprocessing.py,
carried by the model's catalogue row in models/zoo.py), and is the only place the pixels are
touched: aligned 112x112 uint8 RGB crops (ArcFace template) -> NCHW float32.

| family | channels | values fed to the network | source of the fact |
|---|---|---|---|
| ArcFace / CosFace IResNet (insightface) | RGB | (x - 127.5) / 127.5 | arcface_torch: (img/255 - 0.5)/0.5 |
| MobileFaceNet (insightface) | RGB | (x - 127.5) / 127.5 | insightface model zoo, same recipe |
| AdaFace IR | BGR | (x / 255 - 0.5) / 0.5 | AdaFace inference.py `to_input` |
| SFace (OpenCV zoo, fp32) | RGB | x, 0..255 (normalised inside) | FaceRecognizerSF: blobFromImage(swapRB) |
"""
