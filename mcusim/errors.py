"""The errors mcusim reports.  The CLI turns each into one line and a non-zero exit code:
1 the emulated program faulted or a check failed, 2 bad input or environment, 3 an internal
error (mcusim's own bug: never blamed on the user's input)."""

from __future__ import annotations


class McusimError(Exception):
    """Base of every error caused by input, environment or the emulated program."""

    exit_code = 2


class CatalogError(McusimError):
    """A malformed or inconsistent catalog (cores.toml, mcus.toml)."""


class UnknownNameError(McusimError):
    """An MCU, core, function or other name that does not exist."""


class ToolchainError(McusimError):
    """The cross compiler is missing or a build failed."""


class ElfError(McusimError):
    """A file that is not a usable little-endian 32-bit ARM ELF, or does not fit the MCU."""


class UsageError(McusimError):
    """Invalid arguments (e.g. --args)."""


class ModelError(McusimError):
    """A malformed or inconsistent model description (TOML)."""


class DatasetError(McusimError):
    """A missing, malformed or inconsistent data set."""


class EmulationFault(McusimError):
    """The emulated program faulted.  `message` is one line naming fault, address, location."""

    exit_code = 1
    kind = "fault"

    def __init__(self, message: str, *, pc: int | None = None, address: int | None = None,
                 location: str | None = None) -> None:
        super().__init__(message)
        self.pc = pc
        self.address = address
        self.location = location


class UnmappedAccess(EmulationFault):
    kind = "unmapped access"


class FlashWrite(EmulationFault):
    kind = "write to flash"


class InvalidInstruction(EmulationFault):
    kind = "invalid instruction"


class BudgetExhausted(EmulationFault):
    kind = "instruction budget exhausted"


class StackOverflow(EmulationFault):
    kind = "stack overflow"


class TrainingDiverged(McusimError):
    """Training ran into a non-finite loss (a learning rate far too large, typically): a
    failed check of the run (exit 1), not a fault of the emulated program."""

    exit_code = 1


class CheckFailed(McusimError):
    """A check the user asked for did not hold (e.g. a timing window that never closed):
    exit 1."""

    exit_code = 1


class InternalError(McusimError):
    """mcusim's own bug or a broken installation: exit 3, reported as "internal error",
    naming the layer and kernel where known."""

    exit_code = 3

    def __init__(self, message: str, *, layer: str | None = None,
                 kernel: str | None = None) -> None:
        super().__init__(message)
        self.layer = layer
        self.kernel = kernel
