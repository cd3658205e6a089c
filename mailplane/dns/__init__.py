"""``mailplane dns check``: does the DNS that receivers see match what the fleet declares?

``lookup`` is the small question-and-answer interface the checks are written against,
``resolver`` answers it with dnspython, ``checks`` holds the rules (pure logic over a lookup),
``report`` the results and their formats.
"""
