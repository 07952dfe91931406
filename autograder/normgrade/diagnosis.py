"""
Diagnosis by probes: which hidden inputs and parameters explain each graded value.

The model of mistakes (every hypothesis of how a value can be computed, the
matching, the words) is the student package's normlab/diagnosis.py, so that
the students' own checks (normlab.check, on the published examples) and the
grader name a mistake with the same probes and the same words. The grader
loads the course's copy of that file (paths.STUDENT_PACKAGE), never a
submission's, and keeps here what the students never see: which hidden input
of expected.npz, and which call, produced each graded quantity.

The hidden inputs separate the hypotheses (a feature with a tiny spread makes
eps visible, a single example makes the batch axis visible, G = 2 of 6
channels makes groups visible; tests/test_diagnosis.py checks that different
hypotheses give different values), so a match says what the code does.
"""
import importlib.util
import sys

import numpy as np

from .paths import STUDENT_PACKAGE


def _course_model(path=STUDENT_PACKAGE / "diagnosis.py"):
    """The course's normlab/diagnosis.py as a module of its own name (no import of a normlab package)."""
    name = "normgrade._diagnosis_model"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


model = _course_model()
DEFAULT_EPS, DEFAULT_MOMENTUM, Hypothesis = model.DEFAULT_EPS, model.DEFAULT_MOMENTUM, model.Hypothesis
confirmed, describe_difference, key, matches, sentence = (model.confirmed, model.describe_difference, model.key,
                                                          model.matches, model.sentence)

# ---- which probe explains which graded quantity ----------------------------------------------
# The inputs and parameters are those of the recipe that produced the quantity (normgrade.worker,
# with the call's arguments); tests/test_diagnosis.py checks that each probe's right hypothesis
# reproduces the reference's expected value, so the two cannot drift apart.

FORWARD_OF = {  # a backward quantity -> the forward output its cache came from
    "batchnorm_backward_dx": "bn_train_out", "batchnorm_backward_alt_dx": "bn_train_out",
    "batchnorm_backward_dgamma": "bn_train_out", "batchnorm_backward_alt_dgamma": "bn_train_out",
    "batchnorm_backward_dbeta": "bn_train_out", "batchnorm_backward_alt_dbeta": "bn_train_out",
    "ln_dx": "ln_out", "ln_dgamma": "ln_out", "ln_dbeta": "ln_out",
    "sbn_dx": "sbn_train_out", "sbn_dgamma": "sbn_train_out", "sbn_dbeta": "sbn_train_out",
    "gn_G2_dx": "gn_G2_out", "gn_G2_dgamma": "gn_G2_out", "gn_G2_dbeta": "gn_G2_out",
    "gn_G1_dx": "gn_G1_out", "gn_G6_dx": "gn_G6_out",
}
RUNNING = ("bn_train_running_", "bn_steps_running_", "sbn_running_")  # running statistics after train steps
# The train-mode output whose absence makes a train step's running statistics mean nothing (a stub's).
MAIN_OUTPUT = {"batchnorm_forward": "bn_train_out", "spatial_batchnorm_forward": "sbn_train_out"}
FLOAT64_OF = {"bn_f32_out": "bn_train_out", "ln_f32_out": "ln_out"}  # the same computation on float64 input


def _channels(a):
    return np.asarray(a, dtype=np.float64).reshape(1, -1, 1, 1)


def probe(quantity, i, call):
    """
    (hypotheses, layer) for a graded quantity, from the hidden inputs `i` and
    the call that produced it; None where no probe applies.
    """
    with np.errstate(all="ignore"):  # a wrong hypothesis may well divide by zero
        return _probe(quantity, i, call)


def _probe(quantity, i, call):
    eps = call.get("eps", DEFAULT_EPS)
    bn = ("batchnorm", i.get("bn_gamma"), i.get("bn_beta"))
    if quantity in ("bn_train_out", "bn_n1_out", "bn_f32_out"):
        x = {"bn_train_out": i["bn_x"], "bn_n1_out": i["bn_n1_x"],
             "bn_f32_out": i["bn_big_x"].astype(np.float32)}[quantity]
        return model.forward_hypotheses(bn[0], x, bn[1], bn[2], eps, eps_given="eps" in call), "batchnorm"
    if quantity == "bn_d1_out":
        return model.forward_hypotheses("batchnorm", i["bn_d1_x"], i["bn_d1_gamma"], i["bn_d1_beta"], eps,
                                  eps_given="eps" in call), "batchnorm"
    if quantity.startswith(RUNNING):
        which = quantity.rsplit("_", 1)[1]
        if quantity.startswith("bn_steps"):
            xs, start = i["bn_steps_x"], (i["bn_steps_rm"], i["bn_steps_rv"])
        else:
            xs = [i["bn_x"]] if quantity.startswith("bn_train") else [i["sbn_x"]]
            start = (np.zeros(xs[0].shape[1]),) * 2
        layouts = ("per channel", "no transpose") if quantity.startswith("sbn") else ("per feature",)
        momentum = call.get("momentum", DEFAULT_MOMENTUM)
        return model.running_hypotheses(xs, *start, momentum, eps, which, layouts), None
    if quantity.startswith("bn_test_running_"):
        which = quantity.rsplit("_", 1)[1]
        found = model.running_hypotheses([i["bn_test_x"]], i["bn_test_rm"], i["bn_test_rv"], DEFAULT_MOMENTUM, eps,
                                         which)
        unchanged = i["bn_test_rm"] if which == "mean" else i["bn_test_rv"]
        return [Hypothesis((), np.asarray(unchanged, dtype=np.float64))] + [
            Hypothesis((("test mode", "updates"),) + h.parts, h.value) for h in found
            if ("running statistics", "unchanged") not in h.parts], None
    if quantity == "bn_test_out":
        return model.test_mode_hypotheses(i["bn_test_x"], bn[1], bn[2], i["bn_test_rm"], i["bn_test_rv"], eps,
                                    eps_given="eps" in call), "batchnorm"
    if quantity == "sbn_test_out":
        return model.test_mode_hypotheses(i["sbn_test_x"], _channels(i["sbn_gamma"]), _channels(i["sbn_beta"]),
                                    i["sbn_test_rm"], i["sbn_test_rv"], eps,
                                    ("per channel", "no transpose")), "spatial_batchnorm"
    if quantity in ("ln_out", "ln_f32_out", "ln_single_out"):
        x = {"ln_out": i["ln_x"], "ln_f32_out": i["ln_big_x"].astype(np.float32), "ln_single_out": i["ln_single_x"]}
        return model.forward_hypotheses("layernorm", x[quantity], i["ln_gamma"], i["ln_beta"], eps,
                                  eps_given="eps" in call), "layernorm"
    if quantity == "sbn_train_out":
        return model.forward_hypotheses("spatial_batchnorm", i["sbn_x"], _channels(i["sbn_gamma"]),
                                  _channels(i["sbn_beta"]), eps, eps_given="eps" in call), "spatial_batchnorm"
    if quantity.startswith("gn_G") and quantity.endswith("_out"):
        G = int(quantity[len("gn_G"):-len("_out")])
        return model.forward_hypotheses("groupnorm", i["gn_x"], i["gn_gamma"], i["gn_beta"], eps, G=G,
                                  eps_given="eps" in call), "groupnorm"
    backward = {  # quantity -> (layer, x, gamma broadcastable to x, dout, G)
        "batchnorm_backward": ("batchnorm", i["bn_x"], i["bn_gamma"], i["bn_dout"], None),
        "batchnorm_backward_alt": ("batchnorm", i["bn_x"], i["bn_gamma"], i["bn_dout"], None),
        "ln": ("layernorm", i["ln_x"], i["ln_gamma"], i["ln_dout"], None),
        "sbn": ("spatial_batchnorm", i["sbn_x"], _channels(i["sbn_gamma"]), i["sbn_dout"], None),
        "gn_G2": ("groupnorm", i["gn_x"], i["gn_gamma"], i["gn_dout"], 2),
        "gn_G1": ("groupnorm", i["gn_x"], i["gn_gamma"], i["gn_dout"], 1),
        "gn_G6": ("groupnorm", i["gn_x"], i["gn_gamma"], i["gn_dout"], 6),
    }
    prefix, _, name = quantity.rpartition("_")
    if prefix not in backward or name not in ("dx", "dgamma", "dbeta"):
        return None
    layer, x, gamma, dout, G = backward[prefix]
    return model.gradient_hypotheses(layer, name, x, gamma, dout, eps, G), layer
