"""Which COSEM attributes and method parameters carry secrets (never shown in traces or echoes).

A value written to one of these (SET) or passed to one of these methods (ACTION) is key
material or a password: `bijli client --trace`, `bijli decode` and the echo of `client write` /
`client action` show it as "(hidden)" and mask its octets in hex dumps.
"""

# (class_id, attribute_id): IC 15 association LN attribute 7 is the LLS secret
SECRET_ATTRIBUTES = frozenset({(15, 7)})
# (class_id, method_id): IC 15 change_HLS_secret; IC 64 security setup key_transfer (wrapped keys)
SECRET_METHODS = frozenset({(15, 2), (64, 2)})


def is_secret_attribute(class_id, attribute_id):
    """True when a value written to this attribute (of any instance) is a secret."""
    return (int(class_id), int(attribute_id)) in SECRET_ATTRIBUTES


def is_secret_method(class_id, method_id):
    """True when the parameters of this method (of any instance) carry a secret."""
    return (int(class_id), int(method_id)) in SECRET_METHODS
