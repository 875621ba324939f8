from ._signgd import Network as Network
from ._signgd import SigngdError as SigngdError
from ._signgd import Simulation as Simulation
from ._signgd import __version__ as __version__
from ._signgd import convert as convert
