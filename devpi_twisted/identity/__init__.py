"""Where identities come from besides the local users: an LDAP directory (ldap.py, its
wire operations in ldapwire.py, its configuration file in ldapconfig.py), handed to the
model as a ``model.directory.Directory``."""
