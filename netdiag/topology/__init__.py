"""Topology specs (inert, validated data) and their YAML loader; nothing here touches the kernel."""
