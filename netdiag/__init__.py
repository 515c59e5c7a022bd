"""netdiag: packet-level diagnostics for Linux network namespaces.

The package is organised by stage, data flowing one way:
topology spec (``topology``) -> live topology (``live``) -> traffic and capture
(``traffic``, ``capture``) -> pcap on disk -> analysis records (``analysis``)
-> report (``report``). ``cli`` is the only edge that talks to the user.
"""

__version__ = "0.1.0"
