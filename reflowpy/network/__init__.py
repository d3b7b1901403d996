"""The kernel: graphs, actors, ports, networks, events, supervision, registry.

Pure trio + msgspec + networkx: no sockets and no files here (the formats package
reads and writes text; callers do the I/O). Import the public names from
``reflowpy`` itself.
"""
