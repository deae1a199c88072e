"""labelflow's own commands, one module per command or small family of commands.

Each module has ``add_parsers(command)``, ``COMMANDS`` (name → handler returning the JSON document) and, where
arguments must agree with each other, ``CHECKS`` (name → the problem with the parsed arguments, or ``None``): the
protocol of the ``labelflow.commands`` entry point group too (:mod:`labelflow.cli`). :mod:`.common` holds what
several of them share.
"""
