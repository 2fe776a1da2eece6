import pytest

from chaos_runner.errors import AddressRefused
from chaos_runner.target.netguard import NetworkGuard


def guard_routing_to(device):
    return NetworkGuard(route_lookup=lambda _addr: device)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.5.6.7", "::1", "localhost"])
def test_loopback_is_always_allowed(address):
    assert guard_routing_to(None).check(address) == address


def test_lab_address_allowed_only_when_routed_to_the_bridge():
    assert guard_routing_to("labbr0").check("198.18.0.13") == "198.18.0.13"
    with pytest.raises(AddressRefused, match="routes it via eth0, not the lab bridge labbr0"):
        guard_routing_to("eth0").check("198.18.0.13")
    with pytest.raises(AddressRefused, match="via nothing"):
        guard_routing_to(None).check("198.18.0.13")


@pytest.mark.parametrize(
    "address", ["10.0.0.5", "192.168.1.1", "172.16.0.1", "8.8.8.8", "198.18.1.1"]
)
def test_addresses_outside_the_lab_are_refused_before_any_route_lookup(address):
    def no_lookup(_addr):
        raise AssertionError("route lookup must not happen for a non-lab address")

    with pytest.raises(AddressRefused, match="not in the lab network"):
        NetworkGuard(route_lookup=no_lookup).check(address)


def test_names_are_refused_not_resolved():
    with pytest.raises(AddressRefused, match="names are not resolved"):
        guard_routing_to("labbr0").check("db1.example.org")


def test_real_kernel_route_for_loopback_is_lo():
    from chaos_runner.target.netguard import route_device

    assert route_device("127.0.0.1") == "lo"
