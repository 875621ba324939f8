"""signgd: converts ONNX networks into spiking networks with sign-gradient-descent neuronal
dynamics (Oh & Lee, ICML 2024) and simulates them event by event.

    import numpy as np, signgd
    net = signgd.convert("model.onnx", calibration=x_train[:256])
    result = net.simulate(x_test, timesteps=[32, 64], threads=2)
    result["outputs"][64]            # ndarray [inputs, outputs] at T = 64
    result["counters"][64]["gelu"]   # spikes, synaptic events, ... of one population
"""

from ._signgd import Network, SigngdError, convert, __version__

__all__ = ["Network", "SigngdError", "convert", "__version__"]
