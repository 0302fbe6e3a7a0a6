#!/usr/bin/perl
# Crypt::CBC oracle for the knock cipher (tests/unit/codec_test.cpp drives it).
# Reads one request per line on stdin, writes one answer line per request on stdout:
#   enc  CIPHER yes|no KEYHEX IVHEX PLAINHEX  -> ciphertext hex from Crypt::CBC with that IV
#                                               (IVHEX "-" for iv = no: all-zero IV, no header)
#   rand CIPHER yes|no KEYHEX PLAINHEX        -> ciphertext hex, IV chosen by Crypt::CBC
#   dec  CIPHER yes|no KEYHEX CTHEX           -> plaintext hex, by CBC over Crypt::CIPHER with
#                                               Crypt::CBC's key (Crypt::CBC 3.04 cannot decrypt
#                                               the RandomIV form); "BADPAD" or "BADHDR" on error
#   key  CIPHER KEYHEX                        -> the key Crypt::CBC derives, hex
# Any missing module is fatal (exit 2): the test must fail, not skip.
use strict;
use warnings;
use Crypt::CBC;
use Digest::MD5 qw(md5);

my %loaded;
sub module {
  my $c = shift;
  die "bad cipher name $c\n" unless $c =~ /^\w+$/;
  unless ($loaded{$c}) {
    eval "require Crypt::$c; 1" or do { print STDERR "missing Perl module Crypt::$c: $@"; exit 2 };
    $loaded{$c} = 1;
  }
  return "Crypt::$c";
}

sub cbc {
  my ($c, $ivmode, $pass, $iv) = @_;
  my $m = module($c);
  my $bs = $m->blocksize;
  if ($ivmode eq 'yes') {
    return Crypt::CBC->new(-key => $pass, -cipher => $c, -header => 'randomiv', -pbkdf => 'randomiv',
                           (defined $iv ? (-iv => $iv) : ()), -nodeprecate => 1);
  }
  return Crypt::CBC->new(-pass => $pass, -cipher => $c, -header => 'none', -pbkdf => 'randomiv',
                         -iv => "\0" x $bs, -nodeprecate => 1);
}

sub derived_key {
  my ($c, $pass) = @_;
  my $cbc = cbc($c, 'no', $pass);
  $cbc->start('encrypting');
  $cbc->crypt('');
  return $cbc->key;
}

$| = 1;
while (my $line = <STDIN>) {
  chomp $line;
  next if $line eq '';
  my ($op, @a) = split ' ', $line;
  if ($op eq 'enc') {
    my ($c, $ivmode, $k, $iv, $p) = @a;
    my $cbc = cbc($c, $ivmode, pack('H*', $k), $iv eq '-' ? undef : pack('H*', $iv));
    print unpack('H*', $cbc->encrypt(pack('H*', $p // ''))), "\n";
  } elsif ($op eq 'rand') {
    my ($c, $ivmode, $k, $p) = @a;
    print unpack('H*', cbc($c, $ivmode, pack('H*', $k))->encrypt(pack('H*', $p // ''))), "\n";
  } elsif ($op eq 'dec') {
    my ($c, $ivmode, $k, $ct) = @a;
    my $m = module($c);
    my $bs = $m->blocksize;
    my $data = pack('H*', $ct);
    my $iv = "\0" x $bs;
    if ($ivmode eq 'yes') {
      unless ($data =~ s/^RandomIV(.{8})//s) { print "BADHDR\n"; next; }
      $iv = $1;
    }
    my $cipher = $m->new(derived_key($c, pack('H*', $k)));
    my $out = '';
    for (my $i = 0; $i < length $data; $i += $bs) {
      my $block = substr($data, $i, $bs);
      $out .= $cipher->decrypt($block) ^ $iv;
      $iv = $block;
    }
    my $pad = length $out ? ord(substr($out, -1)) : 0;
    if ($pad < 1 || $pad > $bs || substr($out, -$pad) ne chr($pad) x $pad) { print "BADPAD\n"; next; }
    print unpack('H*', substr($out, 0, length($out) - $pad)), "\n";
  } elsif ($op eq 'key') {
    my ($c, $k) = @a;
    print unpack('H*', derived_key($c, pack('H*', $k))), "\n";
  } else {
    die "unknown request $op\n";
  }
}
