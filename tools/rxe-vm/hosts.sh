#!/bin/sh
# shellcheck shell=sh
#
# tools/rxe-vm/hosts.sh N ENV_FILE — sets up N "hosts" inside the rxe-vm guest
# (`tools/rxe-vm/run --hosts N`). init.sh runs it chrooted into the host root
# (the host's iproute2 and sh), after the chroot's /run, /sys and /dev are
# mounted and before the command starts. See README.md, "Several hosts".
#
# Host i (0 <= i < N) is:
#   * a network namespace usec-h<i> with lo up and veth-h<i>, address
#     10.78.0.<10+i>/24, whose peer is a port of the bridge usec-br in the root
#     namespace: TCP between the hosts goes through that bridge;
#   * an RDMA device rxe_h<i> whose RoCEv2 GID is that same address.
#
# Why the RDMA device's netdev is not veth-h<i> itself: rdma_rxe in Linux 6.1 is
# not network-namespace aware. Its UDP socket (port 4791) and its route lookups
# live in the root namespace (init_net), so an rxe device on a netdev inside
# another namespace sends nothing (no route) and receives nothing (the packets
# reach the namespace's own UDP stack, where nobody listens on 4791); and
# `rdma system set netns exclusive` + `rdma dev set rxe_h<i> netns ...` is
# refused (EOPNOTSUPP). So each host's RoCE port is a veth roce-h<i> in the root
# namespace, carrying the host's address, whose peer is a port of a second
# bridge usec-roce: RoCE packets between two hosts leave one device's netdev,
# cross the bridge (ARP, MAC addresses, IP routing by the outgoing interface)
# and arrive on the other's, as between machines; never rxe's loopback
# shortcut (that needs source and destination on one netdev). Two bridges,
# because the namespace side and the root side hold the same addresses.
#
# Three root-namespace knobs make several local addresses of one subnet on
# different links behave like separate machines:
#   accept_local=1   a packet from 10.78.0.11 arriving on roce-h2 is not a
#                    martian, although 10.78.0.11 is also a local address;
#   arp_ignore=1     only roce-h<i> answers ARP for 10.78.0.<10+i>;
#   arp_announce=2   ARP requests leaving roce-h<i> name its own address.
# (rp_filter stays 0: the kernel default, set explicitly.)
#
# Writes ENV_FILE (sourced by the command's cmd.sh):
#   RXE_VM_HOSTS=N
#   RXE_VM_HOST<i>=rxe_h<i>,10.78.0.<10+i>,<GID index of the IPv4 RoCEv2 GID>
#   RXE_VM_ON_HOST, RXE_VM_HOSTS_RUN: paths of the on-host and hosts-run tools
# Any failure: a message on stderr and a non-zero exit (init.sh reports it).

set -eu

n=$1
env_file=$2
tools=$(dirname "$0")

die() {
    printf '%s\n' "$*" >&2
    exit 1
}

addr_of() { echo "10.78.0.$((10 + $1))"; }

# --- the root namespace's IPv4 knobs (see above) -------------------------------
for knob in all/accept_local=1 all/arp_ignore=1 all/arp_announce=2 all/rp_filter=0 default/rp_filter=0; do
    printf '%s\n' "${knob#*=}" > "/proc/sys/net/ipv4/conf/${knob%=*}" \
        || die "cannot set net.ipv4.conf.${knob%=*}"
done

# --- links: one `ip -batch` for the root namespace, one per host namespace -----
# (every exec of a host binary costs ~0.2 s under TCG, so commands are batched)
out=$(
    {
        echo "link add usec-br type bridge"
        echo "link set usec-br up"
        echo "link add usec-roce type bridge"
        echo "link set usec-roce up"
        i=0
        while [ "$i" -lt "$n" ]; do
            echo "netns add usec-h$i"
            echo "link add veth-h$i type veth peer name vbr-h$i"
            echo "link set vbr-h$i master usec-br up"
            echo "link set veth-h$i netns usec-h$i"
            echo "link add roce-h$i type veth peer name rbr-h$i"
            echo "link set rbr-h$i master usec-roce up"
            echo "addr add $(addr_of "$i")/24 dev roce-h$i"
            echo "link set roce-h$i up"
            i=$((i + 1))
        done
    } | ip -batch - 2>&1
) || die "setting up the bridges and veths failed: $out"

i=0
while [ "$i" -lt "$n" ]; do
    out=$(printf '%s\n' "link set lo up" "addr add $(addr_of "$i")/24 dev veth-h$i" "link set veth-h$i up" \
        | ip -n "usec-h$i" -batch - 2>&1) || die "setting up namespace usec-h$i failed: $out"
    i=$((i + 1))
done

# --- the RDMA devices ------------------------------------------------------------
out=$(
    i=0
    while [ "$i" -lt "$n" ]; do
        echo "link add rxe_h$i type rxe netdev roce-h$i"
        i=$((i + 1))
    done | rdma -b - 2>&1
) || die "rdma link add failed: $out"

# The GID table fills in asynchronously (from the netdev's addresses): wait for
# the port to be ACTIVE and the IPv4-mapped GID to appear, and note its index.
# It is 1 on this kernel (0 is the link-local fe80:: GID made from the MAC), but
# ask the table rather than assume. (Entries are taken lowest first: the first 16
# are plenty for a netdev with two addresses.)
gid_index() {
    port=/sys/class/infiniband/$1/ports/1 want=$2 index=0
    while [ "$index" -lt 16 ]; do
        gid='' type=''
        read -r gid 2>/dev/null < "$port/gids/$index" || gid=
        if [ "$gid" = "$want" ]; then
            read -r type 2>/dev/null < "$port/gid_attrs/types/$index" || type=
            [ "$type" = "RoCE v2" ] && { echo "$index"; return 0; }
        fi
        index=$((index + 1))
    done
    return 1
}

port_active() {
    state=
    read -r state 2>/dev/null < "/sys/class/infiniband/$1/ports/1/state" || state=
    [ "$state" = "4: ACTIVE" ]
}

{
    echo "export RXE_VM_HOSTS=$n"
    echo "export RXE_VM_ON_HOST='$tools/on-host'"
    echo "export RXE_VM_HOSTS_RUN='$tools/hosts-run'"
} > "$env_file"
i=0
while [ "$i" -lt "$n" ]; do
    dev=rxe_h$i
    addr=$(addr_of "$i")
    # ::ffff:10.78.0.x as the GID table prints it.
    want=$(printf '0000:0000:0000:0000:0000:ffff:0a4e:%04x' $((10 + i)))
    tries=0
    until port_active "$dev" && index=$(gid_index "$dev" "$want"); do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || die "$dev: no ACTIVE port with the RoCEv2 GID ::ffff:$addr after 20 s"
        sleep 0.1
    done
    echo "export RXE_VM_HOST$i='$dev,$addr,$index'" >> "$env_file"
    i=$((i + 1))
done
