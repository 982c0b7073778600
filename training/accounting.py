"""--dp's privacy accounting: how much epsilon a run's DP-SGD steps spend (dp-accounting).

Every step is a Poisson-sampled Gaussian mechanism (sampling rate q = expected
batch / N, noise multiplier sigma); a run is `steps` of them, composed in
dp-accounting's PLD accountant (privacy loss distributions, the default and
the tighter) or its RDP accountant (Renyi DP, what TensorFlow Privacy
reported). --dp-epsilon calibrates sigma to a target; docs/privacy.md's
"Differential privacy" says what epsilon covers.
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

from core.errors import UsageError

ACCOUNTANTS = ("pld", "rdp")


class _OrdersSkipped(logging.Filter):
    """The RDP accountant logs every order below 2 that does not converge at a large sampling
    rate and leaves it out; the remaining orders still bound epsilon, so the line is noise."""

    def filter(self, record):
        return "failed to converge after" not in record.getMessage()


logging.getLogger("absl").addFilter(_OrdersSkipped())
DEFAULT_EPSILON = 3.0  # --dp alone: a target a user can defend (Google's DP guidance calls epsilon <= 10 reasonable)


def default_delta(examples: int) -> float:
    """The largest power of ten strictly below 1/N: 1e-5 for MNIST's 55,000, 1e-3 for Auto MPG's 251."""
    exponent = math.floor(math.log10(1.0 / examples))
    return 10.0 ** (exponent - 1 if 10.0 ** exponent >= 1.0 / examples else exponent)


def event(sampling_rate: float, noise_multiplier: float, steps: int):
    import dp_accounting

    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier)), steps)


def accountant(kind: str):
    from dp_accounting import pld, rdp

    return pld.PLDAccountant() if kind == "pld" else rdp.RdpAccountant()


def epsilon(kind: str, sampling_rate: float, noise_multiplier: float, steps: int, delta: float) -> float:
    """The epsilon `steps` DP-SGD steps spend (0 before the first)."""
    if steps <= 0:
        return 0.0
    spent = accountant(kind)
    spent.compose(event(sampling_rate, noise_multiplier, steps))
    return float(spent.get_epsilon(delta))


def calibrate(kind: str, sampling_rate: float, steps: int, target: float, delta: float) -> float:
    """The smallest noise multiplier (to 0.1 %) whose `steps` steps spend at most `target`."""
    low, high = 0.3, 1.0
    while epsilon(kind, sampling_rate, high, steps, delta) > target:
        low, high = high, high * 2
        if high > 1e4:
            raise UsageError(f"--dp-epsilon {target}: no noise reaches it in {steps} steps; ask for a larger epsilon")
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if epsilon(kind, sampling_rate, middle, steps, delta) > target else (low, middle)
    return high


class Plan(NamedTuple):
    """One DP run's settings, resolved from its flags and its data."""

    clip: float
    noise_multiplier: float
    delta: float
    examples: int
    expected_batch: int
    steps_per_epoch: int
    epochs: int
    accountant: str
    target_epsilon: float | None  # None: --dp-noise-multiplier was given

    @property
    def sampling_rate(self) -> float:
        return min(1.0, self.expected_batch / self.examples)

    def epsilon(self, steps: int) -> float:
        return epsilon(self.accountant, self.sampling_rate, self.noise_multiplier, steps, self.delta)

    def record(self, steps: int) -> dict:
        """privacy.json: the guarantee after `steps` steps, and what it rests on."""
        other = "rdp" if self.accountant == "pld" else "pld"
        return {
            "epsilon": round(self.epsilon(steps), 4), "delta": self.delta, "accountant": self.accountant,
            f"epsilon_{other}": round(epsilon(other, self.sampling_rate, self.noise_multiplier, steps, self.delta), 4),
            "steps": steps, "noise_multiplier": round(self.noise_multiplier, 5), "l2_clip": self.clip,
            "sampling": "poisson", "sampling_rate": self.sampling_rate, "expected_batch": self.expected_batch,
            "training_examples": self.examples, "target_epsilon": self.target_epsilon,
            "covers": "the trained weights (DP-SGD); see not_covered",
        }

    def describe(self) -> str:
        planned = self.epsilon(self.steps_per_epoch * self.epochs)
        return (f"differential privacy: DP-SGD, noise multiplier {self.noise_multiplier:.4g}, l2 clip {self.clip:g}, "
                f"Poisson sampling q = {self.sampling_rate:.4g} (expected batch {self.expected_batch} of "
                f"{self.examples}); epsilon {planned:.3g} at delta {self.delta:g} after {self.epochs} epoch(s) "
                f"({self.accountant.upper()} accountant)")


def plan(config, examples: int, steps_per_epoch: int) -> Plan:
    """The run's DP settings: the noise multiplier given, or calibrated to --dp-epsilon over every step."""
    delta = config.dp_delta or default_delta(examples)
    if delta >= 1.0 / examples:
        raise UsageError(f"--dp-delta {delta:g} is not below 1/N = {1 / examples:.3g} for {examples} training "
                         "examples: a mechanism that publishes one example whole would satisfy it; use a smaller delta")
    rate, steps = min(1.0, config.batch_size / examples), steps_per_epoch * config.epochs
    if config.dp_noise_multiplier:
        sigma, target = config.dp_noise_multiplier, None
    else:
        target = config.dp_epsilon or DEFAULT_EPSILON
        sigma = calibrate(config.dp_accountant, rate, steps, target, delta)
    return Plan(config.dp_l2_clip, sigma, delta, examples, config.batch_size, steps_per_epoch, config.epochs,
                config.dp_accountant, target)
