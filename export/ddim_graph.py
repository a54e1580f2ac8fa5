"""One DDIM step of a chunk as a tiny ONNX graph, so a torch-free GPU runtime (TensorRT) keeps the whole chunk
loop on the device: denoiser engine, then this graph, eight times, captured once as a CUDA graph.

It is the arithmetic of engine/chunk_loop.py (the guidance mix) and engine/ddim.py (`DDIMSampler.step`), with
the step's coefficients as an input rather than constants, so one engine serves every step of every schedule;
tests/export/test_ddim_graph.py pins it against `denoise_chunk` on ONNX Runtime. It also does what comes before
the next denoiser call: pin the known prefix and gather the denoiser rows.

Inputs (B sessions, R = B + G rows, G guided, T frames, M motion size):
  x (B,T,M) the sample x_t, out (R,T,M) the denoiser's x0 rows, noise (B,T,M) (zeros when sigma = 0),
  coef (5,) [c_x0, c_eps, sigma, sqrt_ab, sqrt_1mab] of this step (engine/ddim.py StepCoefficients),
  prefix (B,T,M) clean prefix motion (zeros past it), known (B,T,1) 1 on prefix frames, rows (R,) int64,
  guided variant only: guided (G,) int64, guidance (1,)
Outputs: x_next (B,T,M) = x_{t_prev} with the prefix pinned, x_rows (R,T,M) = x_next[rows]
"""

from __future__ import annotations

import numpy as np

from .specs import OPSET

COEF_FIELDS = ("c_x0", "c_eps", "sigma", "sqrt_ab", "sqrt_1mab")


def step_coefficients(sampler) -> np.ndarray:
    """(steps, 5) float32: each step's coefficients in the graph's `coef` order."""
    return np.array([[getattr(c, f) for f in COEF_FIELDS] for c in sampler.coefficients], np.float32)


def ddim_step_model(guided: bool):
    """The onnx ModelProto of one step (name "ddim_step" or "ddim_step_guided")."""
    from onnx import TensorProto, helper

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("x", f32, ["B", "T", "M"]),
              helper.make_tensor_value_info("out", f32, ["R", "T", "M"]),
              helper.make_tensor_value_info("noise", f32, ["B", "T", "M"]),
              helper.make_tensor_value_info("coef", f32, [5]),
              helper.make_tensor_value_info("prefix", f32, ["B", "T", "M"]),
              helper.make_tensor_value_info("known", f32, ["B", "T", 1]),
              helper.make_tensor_value_info("rows", i64, ["R"])]
    if guided:
        inputs += [helper.make_tensor_value_info("guided", i64, ["G"]),
                   helper.make_tensor_value_info("guidance", f32, [1])]
    outputs = [helper.make_tensor_value_info("x_next", f32, ["B", "T", "M"]),
               helper.make_tensor_value_info("x_rows", f32, ["R", "T", "M"])]
    const = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(  # noqa: E731
        name, i64, [len(v)], v))
    const_f = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(  # noqa: E731
        name, f32, [1], [v]))
    n = [const("zero", [0]), const("one", [1]), const("axis0", [0]),
         helper.make_node("Shape", ["x"], ["x_shape"]),
         helper.make_node("Gather", ["x_shape", "zero"], ["b"], axis=0),            # (1,) = B
         helper.make_node("Slice", ["out", "zero", "b", "axis0"], ["x0_inst"])]     # out[:B]
    x0 = "x0_inst"
    if guided:
        n += [helper.make_node("Shape", ["out"], ["out_shape"]),
              helper.make_node("Gather", ["out_shape", "zero"], ["r"], axis=0),
              helper.make_node("Slice", ["out", "b", "r", "axis0"], ["neutral"]),   # out[B:]
              helper.make_node("Gather", ["x0_inst", "guided"], ["inst_g"], axis=0),
              helper.make_node("Sub", ["inst_g", "neutral"], ["delta"]),
              helper.make_node("Mul", ["delta", "guidance"], ["delta_g"]),
              helper.make_node("Add", ["neutral", "delta_g"], ["mixed"]),
              helper.make_node("Unsqueeze", ["guided", "one"], ["guided_idx"]),     # (G, 1)
              helper.make_node("ScatterND", ["x0_inst", "guided_idx", "mixed"], ["x0_mixed"])]
        x0 = "x0_mixed"
    for i, f in enumerate(COEF_FIELDS):
        n += [const(f"i_{f}", [i]), helper.make_node("Gather", ["coef", f"i_{f}"], [f], axis=0)]
    n += [helper.make_node("Mul", [x0, "sqrt_ab"], ["ab_x0"]),                     # eps = (x - sqrt_ab x0) / ..
          helper.make_node("Sub", ["x", "ab_x0"], ["resid"]),
          helper.make_node("Div", ["resid", "sqrt_1mab"], ["eps"]),
          helper.make_node("Mul", [x0, "c_x0"], ["a"]),
          helper.make_node("Mul", ["eps", "c_eps"], ["b_"]),
          helper.make_node("Mul", ["noise", "sigma"], ["c"]),
          helper.make_node("Add", ["a", "b_"], ["ab"]),
          helper.make_node("Add", ["ab", "c"], ["prev"]),
          const_f("half", 0.5),
          helper.make_node("Greater", ["known", "half"], ["is_known"]),            # pin the clean prefix exactly
          helper.make_node("Where", ["is_known", "prefix", "prev"], ["x_next"]),
          helper.make_node("Gather", ["x_next", "rows"], ["x_rows"], axis=0)]
    name = "ddim_step_guided" if guided else "ddim_step"
    graph = helper.make_graph(n, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="instructavatar")
    model.ir_version = 8
    return model


def write_ddim_step(folder, guided: bool):
    """Write <folder>/ddim_step[_guided].onnx (checked) and return its path."""
    from pathlib import Path

    import onnx

    model = ddim_step_model(guided)
    onnx.checker.check_model(model)
    path = Path(folder) / f"{model.graph.name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
