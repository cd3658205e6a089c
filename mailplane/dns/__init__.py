"""``mailplane dns check``: does the DNS that receivers see match what the fleet declares?

``lookup`` is the small question-and-answer interface the checks are written against,
``resolver`` answers it with dnspython, ``checks`` holds the rules (pure logic over a lookup),
``spfeval`` evaluates SPF with pyspf (receivers' RFC 7208 ``check_host()``) over that same lookup,
``spfwalk`` is what pyspf cannot say of a record for every client at once (RFC 7208 syntax, the
worst case of its lookup limits, what it authorises), ``report`` the results and their formats.
"""
