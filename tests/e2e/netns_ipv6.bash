# Shared by netns_ipv6_*.sh: the namespaces of netns.bash with IPv6 on 2001:db8::/32 (nodad: no
# duplicate address detection delay). The client is IPv6 only (its IPv4 address removed); the
# other host keeps both families (for the mixed checks).
#   server  2001:db8:1::1 (to client)  2001:db8:2::1 (to other)    + 198.18.1.1, 198.18.2.1
#   client  2001:db8:1::2 (IPv6 only)
#   other   2001:db8:2::2                                           + 198.18.2.2
source "$(dirname "${BASH_SOURCE[0]}")/netns.bash"
SERVER6=2001:db8:1::1
SERVER6_OTHER=2001:db8:2::1
CLIENT6=2001:db8:1::2
OTHER6=2001:db8:2::2

netns_ipv6_setup() {
  netns_setup
  ip -n "$NS_SERVER" -6 addr add $SERVER6/64 dev "$E2E_ID-s1" nodad
  ip -n "$NS_SERVER" -6 addr add $SERVER6_OTHER/64 dev "$E2E_ID-s2" nodad
  ip -n "$NS_CLIENT" -6 addr add $CLIENT6/64 dev "$E2E_ID-c1" nodad
  ip -n "$NS_OTHER" -6 addr add $OTHER6/64 dev "$E2E_ID-o2" nodad
  ip -n "$NS_CLIENT" -4 addr flush dev "$E2E_ID-c1"
  # nodad: the addresses are usable at once (no "tentative" state to wait out).
  local ns
  for ns in "$NS_SERVER" "$NS_CLIENT" "$NS_OTHER"; do
    wait_for 5 "IPv6 addresses of $ns ready" bash -c "! ip -n '$ns' -6 addr show scope global | grep -q tentative"
  done
  [ -z "$(ip -n "$NS_CLIENT" -4 addr show dev "$E2E_ID-c1")" ] || fail "the client still has IPv4"
}

# can_connect6 NS ADDR PORT: bash's /dev/tcp takes IPv6 literals as they are.
# start_service6 PORT: a TCP listener for both families in the server namespace.
start_service6() {
  bg_in_ns "$NS_SERVER" "$E2E_TMP/service.log" socat TCP6-LISTEN:"$1",fork,reuseaddr,ipv6only=0 SYSTEM:true
  wait_for 5 "service on port $1" in_ns "$NS_SERVER" bash -c "ss -ltn | grep -q ':$1 '"
}
