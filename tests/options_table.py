"""The one table of bad (and good) option values that every front end must treat alike: each
fpscope subcommand (tests/cli/test_options.py) and each Python entry point
(tests/python/test_options.py) runs it. A bad value is a usage error (exit 2, one line naming
the option) in the CLI and a ValueError in Python; a good value is accepted everywhere.

Kinds: the option layer's parsers (lib/include/fpscope/options.hpp)."""

# kind -> [(text, words the message must contain (lower case))]
BAD = {
    "format": [("bogus", ["unknown format"]), ("", ["unknown format"]), ("fp16 ", ["unknown format"])],
    "rounding": [("bogus", ["unknown rounding mode"]), ("", ["unknown rounding mode"]), ("RNE ", ["unknown rounding"])],
    "profile": [("bogus", ["unknown profile"]), ("", ["unknown profile"])],
    "overflow": [("clamp", ["unknown overflow policy"]), ("", ["unknown overflow policy"])],
    # A scale is a positive finite number whose float32 is positive and finite; the text is a
    # decimal or 2^K with nothing around it.
    "scale": [("", ["not a number"]), ("3.5e38", ["positive finite"]), ("1e-400", ["out of range"]),
              ("1e400", ["out of range"]), ("1e-46", ["positive finite"]), (" 1", ["not a number"]),
              ("1 ", ["not a number"]), ("-1", ["positive finite"]), ("0", ["positive finite"]),
              ("nan", ["positive finite"]), ("inf", ["positive finite"]), ("2^128", ["positive finite"]),
              ("2^x", ["not a number"]), ("0x10", ["not a number"]), ("+1", ["not a number"])],
    "threads": [("-1", ["integer in [0, 1024]"]), ("100000", ["integer in [0, 1024]"]), ("1.5", ["integer"]),
                ("x", ["integer"])],
    "steps": [("5:2", ["empty"]), ("a:b", ["expected a:b"]), ("1:2:3", ["expected a:b"]), ("", None)],
    # replay of several rank traces (docs/replay.md, "Several ranks")
    "amax_group": [("bogus", ["not an amax group"]), ("", ["not an amax group"]), ("TP", ["not an amax group"]),
                   ("tensor ", ["not an amax group"])],
    # Tensor-core GEMMs (issue 17): architectures and instructions as MMA-Sim names them, lower-case.
    "arch": [("bogus", ["unknown architecture"]), ("", ["unknown architecture"]), ("Hopper", ["unknown architecture"])],
    "inst": [("bogus", ["not a modelled instruction"]), ("", ["not a modelled instruction"]),
             ("m8n8k4.f64.f64.f64.f64", ["f64 instructions are not modelled"])],
}
# "" for --steps means every step: not an error (None above marks a value that is accepted).

GOOD = {
    "format": ["e4m3", "float8_e4m3fn", "BF16"],
    "rounding": ["rtz"],
    "profile": ["cuda"],
    "overflow": ["saturate"],
    "scale": ["2^10", "1024", "0.5", "2^-3", "1e-3", "3.4e38"],
    "threads": ["0", "1", "2"],
    "steps": ["0:1", "0:", ":1", "1"],
    "amax_group": ["tensor", "tp", "rank"],
    "arch": ["ampere", "hopper", "rtx-blackwell"],
    "inst": ["m16n8k16.f32.f16.f16.f32", "m16n8k16.f16.f16.f16.f16"],
}

# The same for Python's number arguments: values, not texts.
BAD_NUMBERS = {
    "scale": [float("nan"), float("inf"), -1.0, 0.0, 1e39, 1e-50, -float("inf")],
    "threads": [-1, 100000],
}
GOOD_NUMBERS = {"scale": [1024.0, 0.5, 2.0 ** -3, 1e-3, 3.4e38], "threads": [0, 1, 2]}

# Policies: the one grammar (docs/replay.md). spec -> words of the message.
BAD_POLICIES = [
    ("adam", ["unknown policy"]),
    ("torch:init=2^3,init=4", ["given twice"]),
    ("torch:init_scale=2,init=4", ["given twice"]),
    ("te-current:pow2,pow2", ["given twice"]),
    ("te-current:power_2_scale=1,pow2", ["given twice"]),
    ("te-delayed:margin=1,margin=2", ["given twice"]),
    ("te-delayed:bogus=1", ["unknown"]),
    ("mx:rounding=floor,scaling_mode=ceil", ["given twice"]),
    ("mx:scaling_mode=up", ["not one of"]),
    ("block:tile=2x2", ["not one of"]),
    ("static:1e39", ["positive finite"]),
    ("static:1e-46", ["positive finite"]),
    ("static:0", ["positive finite"]),
    ("static:nan", ["positive finite"]),
    ("torch:init=1e39", ["positive finite"]),
    ("megatron:init=1e39", ["positive finite"]),
    ("torch:interval=1.5", ["integer"]),
    ("te-delayed:amax_history_len=0", ["integer"]),
    ("te-delayed:margin= 1", ["integer"]),
    ("torch:init", ["needs a value"]),
    ("torch:init=", ["not a number"]),
    ("torch:,init=2", ["empty item"]),
    ("te-current:amax_epsilon=-1", ["amax_epsilon"]),
    # GEMM-operand block recipes (issue 16)
    ("mxfp8:elem=e2m1", ["not one of"]),
    ("mxfp8:scaling_mode=up", ["not one of"]),
    ("mxfp4:elem=e2m1", ["unknown key"]),
    ("mxfp6:rounding=rtz", ["not one of"]),
    ("mxfp8:block_size=0", ["integer"]),
    ("nvfp4:profile=ao", ["not one of"]),
    ("nvfp4:sr=maybe", ["stochastic_rounding"]),
    ("nvfp4:seed=-1", ["integer"]),
    ("fp8-block:w_block_scaling_dim=3", ["integer"]),
    ("fp8-block:amax_epsilon=-1", ["amax_epsilon"]),
    ("deepseek:amax_floor=nan", ["amax_floor"]),
    ("deepseek:ue8m0,ue8m0", ["given twice"]),
]
GOOD_POLICIES = ["torch", "torch:", "torch:init=2^3", "te-delayed:margin=2^3", "te-delayed:margin=-1",
                 "te-delayed:amax_history_len=16,amax_compute_algo=most_recent",
                 "te-delayed:history=16,algo=max", "te-current:pow2", "te-current:power_2_scale=false",
                 "te-current:amax_epsilon=2^-20", "mx", "mx:scaling_mode=rceil", "mx:rounding=even,block_size=16",
                 "block:tile=128x128,pow2", "static:2^10", "static:scale=1024",
                 "deepspeed:hysteresis=1,raise_error_at_min_scale=false", "megatron:initial_loss_scale=2^16",
                 # GEMM-operand block recipes (issue 16)
                 "mxfp8", "mxfp8:scaling_mode=floor,elem=e5m2", "mxfp6:elem=e3m2,rounding=rna", "mxfp4:scaling_mode=even",
                 "nvfp4", "nvfp4:profile=torchao", "nvfp4:2d=false,sr=false,seed=7", "fp8-block:fp8_format=hybrid,pow2=false",
                 "fp8-block:w_block_scaling_dim=1", "deepseek", "deepseek:ue8m0,amax_floor=0"]
