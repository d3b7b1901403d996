"""Bridges: nodes in other reflowpy processes and on other machines.

See :mod:`reflowpy.bridge.frames` (the wire), :mod:`reflowpy.bridge.channel` (one edge's
state machine: sequence numbers, credits, resend buffer, resume).
"""
