"""Stage 3: analysis of a capture on disk.

Everything here works without root from a file: ``reader`` streams frames out
of pcap/pcapng files, ``decode`` turns each frame into a ``DecodedPacket`` (and
counts every frame as decoded, non-IP, truncated or undecodable), ``icmp`` and
``tcp`` follow conversations, ``findings`` turns what they saw into verdicts,
and ``model`` holds the frozen records that leave this stage.
"""
