"""Traffic from inside namespaces: ICMP echo with scapy, TCP with kernel sockets."""
