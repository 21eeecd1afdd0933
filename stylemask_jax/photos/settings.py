"""The refinement's settings as plain data (no JAX here, so a command's `--help` can show them).

    settings = RefineSettings(steps=20).check()     # `photos.refine.make_refine_fn` takes it
"""

from __future__ import annotations

import dataclasses

from stylemask_jax.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class RefineSettings:
    """steps: Adam updates (0: keep the e4e codes); lr: Adam's step size in W units; l2, l1,
    identity, pull: the loss weights of `photos.refine` (identity needs IR-SE weights)."""
    steps: int = 0
    lr: float = 0.01
    l2: float = 1.0
    l1: float = 0.0
    identity: float = 0.1
    pull: float = 0.01

    def check(self) -> "RefineSettings":
        """The settings, or a UserInputError naming the first value out of range."""
        if self.steps < 0:
            raise UserInputError(f"refinement steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise UserInputError(f"refinement learning rate must be > 0, got {self.lr}")
        for name in ("l2", "l1", "identity", "pull"):
            if getattr(self, name) < 0:
                raise UserInputError(f"refinement weight {name} must be >= 0, "
                                     f"got {getattr(self, name)}")
        return self
