# The shared real models with their real inputs and ONNX Runtime 1.30's outputs of the original (golden),
# as "model | inputs folder | golden folder" under ../shared/models. Sourced by tests/ort_interop.sh and
# scripts/sweep.sh.
# shellcheck disable=SC2034
shared_model_cases=(
  "trained/digits_cnn.onnx|trained/inputs/digits_test|trained/golden/digits_cnn"
  "trained/digits_mlp.onnx|trained/inputs/digits_test_flat|trained/golden/digits_mlp"
  "trained/digits_vit.onnx|trained/inputs/digits_test|trained/golden/digits_vit"
  "tabular/iris_mlp.onnx|tabular/iris_inputs|tabular/golden/iris_mlp"
  "vision/squeezenet1.1_fp32.onnx|vision/inputs/squeezenet_fish_fp32|vision/golden/squeezenet_fp32"
  "vision/mnist_winml.onnx|vision/inputs/mnist_28|vision/golden/mnist_winml"
  "audio/silero_vad_v5_16k_op15.onnx|audio/inputs/silero_v5_x1|audio/golden/silero_vad_v5_16k_op15_x1"
  "ocr/ppocrv4_det.onnx|ocr/inputs/det|ocr/golden/ppocrv4_det"
)
