#!/usr/bin/perl
# craft-pcap.pl OUT KIND [PORTS]: writes a hostile pcap file for tests/e2e/hostile_pcap.sh.
#   PORTS: a knock (comma-separated span ports, as knockclient -test prints them) sent as TCP
#          SYNs from 198.18.0.2 to 198.18.0.1, interleaved with the hostile records.
#   KIND null     link type NULL (no BPF filter applies: every record reaches the parser):
#                 zero-length and truncated records, bad IP versions and IHLs, bad lengths,
#                 short TCP headers, fragments, IPv6 extension-header chains (loops, huge
#                 lengths, AH), jumbograms, odd address families, random bytes; then PORTS.
#        ether    the same hostility on Ethernet (VLAN tag stacks, odd ethertypes, runts).
#        giant    PORTS, then a record whose caplen is 2^31-1 (libpcap must refuse it).
#        cut      PORTS, then a record cut off in the middle of its header and data.
#        badlink  a file of link type 147 (USER0), which the daemon does not decode.
#        short    10 bytes: not even the file header.
#        empty    the file header only.
# Prints the number of records written. Deterministic (fixed seed); addresses 198.18.0.0/15
# and 2001:db8::/32 only.
use strict;
use warnings;

my ($out, $kind, $ports) = @ARGV;
die "usage: craft-pcap.pl OUT KIND [PORTS]\n" unless defined $kind;
my @knock = defined $ports && length $ports ? split /,/, $ports : ();
srand(7);
open(my $fh, '>:raw', $out) or die "$out: $!\n";

my $records = 0;
my $t = 1000;
sub header { my ($dlt, $snap) = @_; print $fh pack('VvvVVVV', 0xa1b2c3d4, 2, 4, 0, 0, $snap // 65535, $dlt); }
sub record {  # record(BYTES [, CAPLEN [, LEN]])
  my ($bytes, $caplen, $len) = @_;
  $caplen //= length $bytes;
  $len //= length $bytes;
  $t += 0.001;
  print $fh pack('VVVV', int($t), int(($t - int($t)) * 1e6), $caplen, $len), $bytes;
  $records++;
}

sub csum {
  my ($data) = @_;
  $data .= "\0" if length($data) % 2;
  my $sum = 0;
  $sum += $_ for unpack('n*', $data);
  $sum = ($sum & 0xffff) + ($sum >> 16) while $sum >> 16;
  return ~$sum & 0xffff;
}
sub tcp {  # tcp(SRC4, DST4, SPORT, DPORT, SEQ [, DATA_OFFSET_WORDS])
  my ($src, $dst, $sport, $dport, $seq, $doff) = @_;
  $doff //= 5;
  my $h = pack('nnNNCCnnn', $sport, $dport, $seq, 0, $doff << 4, 0x02, 64240, 0, 0);
  my $c = csum($src . $dst . pack('CCn', 0, 6, length $h) . $h);
  substr($h, 16, 2) = pack('n', $c);
  return $h;
}
sub ipv4 {  # ipv4(SRC4, DST4, PROTO, PAYLOAD [, VIHL [, TOTAL [, FRAG]]])
  my ($src, $dst, $proto, $payload, $vihl, $total, $frag) = @_;
  $vihl //= 0x45;
  $total //= 20 + length $payload;
  $frag //= 0;
  my $h = pack('CCnnnCCn', $vihl, 0, $total, 1, $frag, 64, $proto, 0) . $src . $dst;
  substr($h, 10, 2) = pack('n', csum($h));
  return $h . $payload;
}
sub ipv6 {  # ipv6(SRC16, DST16, NEXT, PAYLOAD [, PAYLOAD_LENGTH])
  my ($src, $dst, $nh, $payload, $plen) = @_;
  $plen //= length $payload;
  return pack('NnCC', 0x60000000, $plen, $nh, 64) . $src . $dst . $payload;
}
my $client = pack('C4', 198, 18, 0, 2);
my $server = pack('C4', 198, 18, 0, 1);
my $other = pack('C4', 198, 18, 7, 7);
my $c6 = pack('n8', 0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
my $s6 = pack('n8', 0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
my $syn = tcp($other, $server, 40000, 2000, 1);
my $syn6 = tcp($c6, $s6, 40000, 2001, 1);   # checksum is not checked; shape is what matters

# IP packets (no link header) that must be counted and skipped.
sub hostile_ip {
  my @p;
  push @p, '', "\x45", "\x45\0\0\x28", substr(ipv4($other, $server, 6, $syn), 0, 19);
  push @p, ipv4($other, $server, 6, $syn, 0x40);                    # IHL 0
  push @p, ipv4($other, $server, 6, $syn, 0x44);                    # IHL 4 (16 bytes)
  push @p, ipv4($other, $server, 6, $syn, 0x4f);                    # IHL 15: options beyond the packet
  push @p, ipv4($other, $server, 6, $syn, 0x55);                    # version 5
  push @p, ipv4($other, $server, 6, $syn, 0x35);                    # version 3
  push @p, ipv4($other, $server, 6, $syn, undef, 0);                # total length 0
  push @p, ipv4($other, $server, 6, $syn, undef, 19);               # total length < IHL
  push @p, ipv4($other, $server, 6, $syn, undef, 65535);            # total length > capture
  push @p, ipv4($other, $server, 6, $syn, undef, 24);               # total length cuts TCP
  push @p, ipv4($other, $server, 6, substr($syn, 0, 10));           # TCP header cut short
  push @p, ipv4($other, $server, 6, tcp($other, $server, 40000, 2000, 1, 0));   # data offset 0
  push @p, ipv4($other, $server, 6, tcp($other, $server, 40000, 2000, 1, 15));  # data offset past the end
  push @p, ipv4($other, $server, 6, $syn, undef, undef, 0x0001);    # non-first fragment
  push @p, ipv4($other, $server, 6, substr($syn, 0, 8), undef, undef, 0x2000);  # first fragment, short
  push @p, ipv4($other, $server, 17, "\x9c\x40");                   # UDP header cut short
  push @p, ipv4($other, $server, 1, "\x08\0\0\0");                  # ICMP
  push @p, ipv4($other, $server, 255, 'x' x 40);                    # reserved protocol
  push @p, substr(ipv6($c6, $s6, 6, $syn6), 0, 39);                 # IPv6 header cut short
  push @p, ipv6($c6, $s6, 6, substr($syn6, 0, 12));                 # TCP cut short
  push @p, ipv6($c6, $s6, 6, $syn6, 0);                             # jumbogram without its option
  push @p, ipv6($c6, $s6, 6, $syn6, 4);                             # payload length cuts TCP
  push @p, ipv6($c6, $s6, 59, '');                                  # no next header
  # extension headers: an endless chain (each names another hop-by-hop header), 8 bytes each
  push @p, ipv6($c6, $s6, 0, pack('CCx6', 0, 0) x 200);
  push @p, ipv6($c6, $s6, 60, pack('CCx6', 60, 0) x 17 . $syn6);    # 17 destination options, then TCP
  push @p, ipv6($c6, $s6, 43, pack('CCx6', 43, 0) x 5000);          # 40 KB of routing headers
  push @p, ipv6($c6, $s6, 0, pack('CCx6', 6, 255) . $syn6);         # header length 2048 > packet
  push @p, ipv6($c6, $s6, 51, pack('CCx10', 6, 255) . $syn6);       # AH length 1028 > packet
  push @p, ipv6($c6, $s6, 51, pack('CC', 6, 0));                    # AH cut short
  push @p, ipv6($c6, $s6, 44, pack('CCnN', 6, 0, 0x0008, 1) . $syn6);   # fragment, offset 8
  push @p, ipv6($c6, $s6, 44, pack('CCnN', 6, 0, 0x0001, 1) . substr($syn6, 0, 6));  # first fragment, short
  push @p, ipv6($c6, $s6, 44, pack('CCnN', 44, 0, 0x0001, 1) x 30);     # fragment headers all the way
  push @p, "\x60" . ("\xff" x 39);                                  # all ones
  push @p, "\x00" x 1500, "\xff" x 1500;
  for (1 .. 300) {  # random bytes, some starting like IPv4/IPv6
    my $n = int(rand(120));
    my $b = join '', map { chr(int(rand(256))) } 1 .. $n;
    substr($b, 0, 1) = chr((rand() < 0.5 ? 0x40 : 0x60) | int(rand(16))) if $n && rand() < 0.7;
    push @p, $b;
  }
  return @p;
}

sub knock_packet {
  my ($i, $port) = @_;
  return ipv4($client, $server, 6, tcp($client, $server, 41000 + $i, $port, 1000 + $i));
}

if ($kind eq 'null' || $kind eq 'ether') {
  my @hostile = hostile_ip();
  my $wrap;
  if ($kind eq 'null') {
    header(0);
    $wrap = sub { my ($ip) = @_; my $v = length($ip) && (ord($ip) >> 4) == 6 ? 10 : 2; return pack('V', $v) . $ip; };
    # odd address families and runts of the 4-byte header
    record($_) for '', "\x02", "\x02\0\0", pack('V', 0xdeadbeef) . ipv4($other, $server, 6, $syn),
        pack('V', 99) . ipv4($other, $server, 6, $syn), pack('V', 2);
  } else {
    header(1);
    my $mac = "\x02\0\0\0\0\x01\x02\0\0\0\0\x02";
    $wrap = sub { my ($ip) = @_; my $type = length($ip) && (ord($ip) >> 4) == 6 ? 0x86dd : 0x0800; return $mac . pack('n', $type) . $ip; };
    my $ip4 = ipv4($other, $server, 6, $syn);
    record($_) for '', "\x02", $mac, $mac . "\x08",
        $mac . pack('n', 0x8100) x 1,                                         # tag without its TCI
        $mac . (pack('nn', 0x8100, 1) x 20) . pack('n', 0x0800) . $ip4,       # 20 VLAN tags
        $mac . (pack('nn', 0x88a8, 1) x 9) . pack('n', 0x0800) . $ip4,        # 9 QinQ tags
        $mac . pack('nn', 0x8100, 1) x 500,                                   # tags to the end
        $mac . pack('n', 0x0806) . ("\0" x 28),                               # ARP
        $mac . pack('n', 0x0800),                                             # IPv4 type, no header
        $mac . pack('n', 0x86dd) . "\x60";                                    # IPv6 type, 1 byte
  }
  my @k = @knock;
  my $i = 0;
  for my $p (@hostile) {
    record($wrap->($p));
    if (@k && $i++ % 10 == 5) { record($wrap->(knock_packet(scalar(@knock) - @k, shift @k))); }
  }
  record($wrap->(knock_packet(scalar(@knock) - @k, shift @k))) while @k;
  # last: a record that claims a longer original length than captured, then one with len 0
  record($wrap->(ipv4($other, $server, 6, $syn)), undef, 0xffffffff);
  record($wrap->(ipv4($other, $server, 6, $syn)), undef, 0);
} elsif ($kind eq 'giant' || $kind eq 'cut') {
  header(1);
  my $mac = "\x02\0\0\0\0\x01\x02\0\0\0\0\x02" . pack('n', 0x0800);
  record($mac . knock_packet($_, $knock[$_])) for 0 .. $#knock;
  if ($kind eq 'giant') {
    record($mac . ipv4($other, $server, 6, $syn), 0x7fffffff, 0x7fffffff);
  } else {
    print $fh pack('VVV', int($t) + 1, 0, 54);   # 12 of the 16 header bytes
    $records++;
  }
  # a knock after the damage, which nobody can read
  record($mac . knock_packet($_, $knock[$_])) for 0 .. $#knock;
} elsif ($kind eq 'badlink') {
  header(147);
  record('x' x 60);
} elsif ($kind eq 'short') {
  print $fh pack('VvvV', 0xa1b2c3d4, 2, 4, 0), "\0\0";
} elsif ($kind eq 'empty') {
  header(1);
} else {
  die "unknown KIND $kind\n";
}
close($fh) or die "$out: $!\n";
print "$records\n";
