"""Losses: softmax cross-entropy (with label smoothing), mean squared error, and distillation (Hinton 2015).

Each loss is a pair of pure functions (``*_forward`` returns the mean loss and what the backward needs,
``*_backward`` returns the gradient) plus a small object with ``forward(logits, target) -> float`` and
``backward(grad_output=1.0) -> d loss / d logits``, following the module contract: one backward per forward.
All reductions are means over the batch, exactly as torch's defaults. Arithmetic runs in the dtype of the
logits (float32 or float64); the returned loss is a Python float.

Shapes: logits (N, C) with C classes; integer class targets (N,).
"""
from __future__ import annotations

import numpy as np

from nn.module import FLOAT_DTYPES, Module


# ---------------------------------------------------------------------------------------------- helpers
def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax: z - max - log(sum(exp(z - max)))."""
    m = np.max(z, axis=axis, keepdims=True)
    s = z - m
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _check_logits(name: str, logits, what: str = "logits") -> np.ndarray:
    if not isinstance(logits, np.ndarray):
        raise TypeError(f"{name} expects {what} as a numpy.ndarray, got {type(logits).__name__}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} expects float32 or float64 {what}, got {logits.dtype}")
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"{name} expects {what} of shape (N, C) with N, C > 0, got {logits.shape}")
    return logits


def _check_targets(name: str, target, n: int, c: int) -> np.ndarray:
    target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name} expects integer class targets (use target.astype(np.int64)), got dtype "
                        f"{target.dtype}")
    if target.shape != (n,):
        raise ValueError(f"{name} expects targets of shape ({n},) for logits of shape ({n}, {c}), "
                         f"got {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= c):
        bad = target[(target < 0) | (target >= c)]
        raise ValueError(f"{name}: targets must lie in [0, {c}), got {bad[:5].tolist()}")
    return target


# ---------------------------------------------------------------------------------------------- cross-entropy
def cross_entropy_forward(logits: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy as torch.nn.functional.cross_entropy (reduction='mean').

    With smoothing eps the target distribution is q = (1 - eps) * onehot(t) + eps / C, so
    loss_i = -(1 - eps) * log p_{i,t_i} - (eps / C) * sum_c log p_{i,c}.

    Parameters
    ----------
    logits : (N, C) float32/float64
    target : (N,) integer class indices in [0, C)

    Returns
    -------
    loss : float
    p : (N, C) softmax probabilities, kept for the backward
    """
    n, c = logits.shape
    logp = log_softmax(logits)  # (N, C)
    nll = -logp[np.arange(n), target]  # (N,)
    if label_smoothing:
        loss_i = (1.0 - label_smoothing) * nll - (label_smoothing / c) * logp.sum(axis=1)
    else:
        loss_i = nll
    return float(loss_i.mean()), np.exp(logp)


def cross_entropy_backward(p: np.ndarray, target: np.ndarray, label_smoothing: float = 0.0,
                           grad_output: float = 1.0) -> np.ndarray:
    """d loss / d logits = (p - q) / N, with q the (smoothed) target distribution; (N, C) like p."""
    n, c = p.shape
    g = p.copy()
    if label_smoothing:
        g -= label_smoothing / c
    g[np.arange(n), target] -= 1.0 - label_smoothing
    g *= grad_output / n
    return g


class CrossEntropyLoss(Module):
    """torch.nn.CrossEntropyLoss(label_smoothing=...) for (N, C) logits and integer targets, mean reduction."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss label_smoothing must lie in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> float:
        _check_logits("CrossEntropyLoss", logits)
        target = _check_targets("CrossEntropyLoss", target, *logits.shape)
        loss, p = cross_entropy_forward(logits, target, self.label_smoothing)
        self._save(p=p, target=target)
        return loss

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        c = self._take()
        return cross_entropy_backward(c["p"], c["target"], self.label_smoothing, grad_output)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


# ---------------------------------------------------------------------------------------------- MSE
def mse_forward(x: np.ndarray, y: np.ndarray) -> float:
    """mean((x - y)^2) over every element, as torch.nn.MSELoss()."""
    return float(np.mean(np.square(x - y)))


def mse_backward(x: np.ndarray, y: np.ndarray, grad_output: float = 1.0) -> np.ndarray:
    """d/dx mean((x - y)^2) = 2 (x - y) / numel; same shape as x."""
    return (x - y) * (2.0 * grad_output / x.size)


class MSELoss(Module):
    """torch.nn.MSELoss() (mean over all elements); ``target`` must match ``input`` in shape and dtype."""

    def forward(self, input: np.ndarray, target: np.ndarray) -> float:
        for what, a in (("input", input), ("target", target)):
            if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"MSELoss expects a float32/float64 numpy {what}, got "
                                f"{getattr(a, 'dtype', type(a).__name__)}")
        if input.shape != target.shape or input.size == 0:
            raise ValueError(f"MSELoss expects non-empty input and target of the same shape, got {input.shape} "
                             f"and {target.shape}")
        if input.dtype != target.dtype:
            raise TypeError(f"MSELoss got input {input.dtype} and target {target.dtype}; use one dtype")
        self._save(x=input, y=target)
        return mse_forward(input, target)

    def backward(self, grad_output: float = 1.0) -> np.ndarray:
        c = self._take()
        return mse_backward(c["x"], c["y"], grad_output)


# ---------------------------------------------------------------------------------------------- distillation
def kd_forward(student: np.ndarray, teacher: np.ndarray, T: float):
    """Hinton et al. 2015 soft-target loss: T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T)).

    torch: ``F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction='batchmean') * T * T``.

    Returns the loss (float) and (log p_s, log p_t), the (N, C) log-probabilities at temperature T.
    """
    logq = log_softmax(student / T)  # (N, C) student
    logp = log_softmax(teacher / T)  # (N, C) teacher
    p = np.exp(logp)
    # KL_i = sum_c p_c (log p_c - log q_c); p log p is taken as 0 where p underflows (torch uses xlogy).
    kl = np.sum(p * (logp - logq), axis=1)  # (N,)
    return float(T * T * kl.mean()), logq, logp, kl


def kd_backward(logq: np.ndarray, logp: np.ndarray, kl: np.ndarray, T: float, grad_output: float = 1.0,
                teacher: bool = False):
    """Gradients of the KD loss.

    d/ds = T (q - p) / N  (the 1/T of s/T meets the T^2 factor);
    d/dt = T p (log p - log q - KL_i) / N  (only computed when ``teacher``).

    Returns ds (N, C), or (ds, dt) when ``teacher``.
    """
    n = logq.shape[0]
    p = np.exp(logp)
    scale = grad_output * T / n
    ds = (np.exp(logq) - p) * scale
    if not teacher:
        return ds
    dt = p * (logp - logq - kl[:, None]) * scale
    return ds, dt


class KDLoss(Module):
    """Temperature-scaled distillation loss on student and teacher logits, both (N, C) of one dtype.

    ``forward(student_logits, teacher_logits) -> float``; ``backward()`` returns the student gradient, or
    ``(d_student, d_teacher)`` with ``backward(teacher=True)`` (online/mutual distillation trains both).
    """

    def __init__(self, T: float = 4.0) -> None:
        super().__init__()
        if not T > 0:
            raise ValueError(f"KDLoss temperature T must be positive, got {T}")
        self.T = float(T)

    def forward(self, student: np.ndarray, teacher: np.ndarray) -> float:
        _check_logits("KDLoss", student, "student logits")
        _check_logits("KDLoss", teacher, "teacher logits")
        if student.shape != teacher.shape or student.dtype != teacher.dtype:
            raise ValueError(f"KDLoss: student {student.shape} {student.dtype} and teacher {teacher.shape} "
                             f"{teacher.dtype} logits must match in shape and dtype")
        loss, logq, logp, kl = kd_forward(student, teacher, self.T)
        self._save(logq=logq, logp=logp, kl=kl)
        return loss

    def backward(self, grad_output: float = 1.0, teacher: bool = False):
        c = self._take()
        return kd_backward(c["logq"], c["logp"], c["kl"], self.T, grad_output, teacher)

    def extra_repr(self) -> str:
        return f"T={self.T}"
