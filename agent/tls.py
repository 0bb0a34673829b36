"""The TLS context the agent's HTTPS calls use, from the ``verify_ca`` setting.

``verify_ca`` true (or absent): verify the server's certificate against the system's CAs; a string: against
that PEM file; false: do not verify (the admin setting "Verify CA" off, e.g. a self-signed control plane).
"""
import ssl


def client_context(verify_ca):
    if verify_ca is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify_ca, str):
        return ssl.create_default_context(cafile=verify_ca)
    return ssl.create_default_context()
