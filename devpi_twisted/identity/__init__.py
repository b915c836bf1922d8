"""Where identities come from besides the local users: an LDAP directory (ldap.py, its
configuration file in ldapconfig.py), handed to the model as a ``model.directory.Directory``."""
