"""Capture inside a namespace to pcap on disk, without tcpdump (see ``sniffer``)."""
