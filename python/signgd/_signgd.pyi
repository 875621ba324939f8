"""Type stubs of the compiled module (re-exported by `signgd`)."""

from os import PathLike
from typing import Any, Dict, List, Literal, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

class SigngdError(Exception):
    """A model signgd cannot read or convert, data that do not fit it, or a setting it cannot use."""

class Simulation(TypedDict):
    timesteps: List[int]
    outputs: Dict[int, npt.NDArray[Union[np.float32, np.float64]]]
    counters: Dict[int, Dict[str, Dict[str, int]]]

class Network:
    @property
    def input_shape(self) -> List[int]: ...
    @property
    def output_size(self) -> int: ...
    @property
    def neurons(self) -> int: ...
    @property
    def notes(self) -> List[str]: ...
    def summary(self) -> Dict[str, Any]: ...
    def fingerprint(self) -> str: ...
    def simulate(
        self,
        x: npt.NDArray[np.float64],
        timesteps: List[int] = [32, 64, 128, 256],
        *,
        threads: int = 1,
        precision: Literal["f32", "f64"] = "f32",
    ) -> Simulation: ...
    def report(
        self,
        dir: Union[str, "PathLike[str]"],
        x: npt.NDArray[np.float64],
        labels: Optional[Sequence[int]] = None,
        *,
        timesteps: List[int] = [32, 64, 128, 256],
        threads: int = 1,
        precision: Literal["f32", "f64"] = "f32",
        energy_model: str = "45nm-fp32",
        force: bool = False,
    ) -> Dict[str, Any]: ...
    def feasibility(
        self,
        target: str = "all",
        x: Optional[npt.NDArray[np.float64]] = None,
        *,
        encoder: Literal["float", "spike"] = "float",
        threads: int = 1,
    ) -> List[Dict[str, Any]]: ...

def convert(
    onnx_path: Union[str, "PathLike[str]"],
    calibration: Optional[npt.NDArray[np.float64]] = None,
    *,
    gelu: Literal["sigmoid", "erf"] = "sigmoid",
    relu_norm: Literal["element", "channel", "layer"] = "element",
    threads: int = 1,
) -> Network: ...
