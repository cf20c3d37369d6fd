"""A synthetic alliance of raw institution tables, for ingest, training and scale tests.

``fedcredit generate`` writes, per member institution, the raw tables of the institution data
model (:mod:`node.ingest.datamodel`) in that institution's own column names and file format,
plus the ingest config that maps them back; and, once for the alliance, a ground-truth label
file no institution holds. One latent creditworthiness per person drives everything every
institution sees, so the federated features carry real signal about the label.

Entry points: :func:`fedcredit.synth.alliance.generate_alliance` (library) and
:func:`fedcredit.synth.command.generate` (the CLI command).
"""
