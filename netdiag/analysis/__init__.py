"""Stage 3: analysis of a capture on disk.

Everything here works without root from a file: ``reader`` streams frames out
of pcap/pcapng files, ``decode`` turns each frame into a ``DecodedPacket`` (and
counts every frame as decoded, non-IP, truncated or undecodable), ``icmp`` and
``tcp`` follow conversations, ``findings`` turns what they saw into verdicts,
and ``model`` holds the frozen records that leave this stage.
"""

from netdiag.analysis._compiled import activate as _activate_compiled

# True when the mypyc-compiled hot modules are in use (see _compiled.py).
COMPILED = _activate_compiled(__path__)
