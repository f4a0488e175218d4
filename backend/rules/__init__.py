"""Rules about values, each kept once, for schemas, services, the agent, the CLI and the seed.

text       storable text (no NUL, no lone surrogate)
handles    workspace handles (length, shape, reserved names)
passwords  password length
tones      the tones with tuned instructions and templates
identity   email addresses as identities (normal form, mixed scripts)
links      links shown to visitors (public hosts, no credentials, no invisible characters)
connectors a scheduling connector's booking link, per connector type
folding    accent folding for matching words and making ASCII slugs

Nothing here imports the rest of the application.
"""
