"""fakedet.export: from a training checkpoint to deployable artifacts.

    source.py       checkpoint checks, manifest from the checkpoint config
    onnx_export.py  torch -> ONNX (exporter per architecture, onnxslim, checker, shapes)
    fp16.py         mixed-precision FP16 ONNX (onnxconverter-common, fp32 I/O)
    parity.py       PyTorch vs ONNX Runtime on random tensors and real images
    pipeline.py     the whole export, written atomically into a package
    triton.py       package -> Triton model repository
    tensorrt_rules.py    pure TensorRT build rules (versions, sources, flags, shapes, names)
    tensorrt_build.py    the thin TensorRT builder layer
    cli.py          `fakedet export`;  build_cli.py  `fakedet build`
"""
