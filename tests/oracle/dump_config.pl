#!/usr/bin/perl
# Prints Config::General's tree (default options) of FILE as canonical pretty JSON: the oracle
# that knockdaemon -dumpconfig is compared with. Dies (exit 255) where Config::General dies.
use strict;
use warnings;
use Config::General;
use JSON::PP;

die "usage: $0 FILE\n" unless @ARGV == 1;
my %tree = Config::General->new(-ConfigFile => $ARGV[0])->getall;
my $out = JSON::PP->new->canonical->pretty->encode(\%tree);
# A file starting with a UTF-8 BOM is read as characters: write them back as UTF-8 bytes.
utf8::encode($out) if utf8::is_utf8($out);
print $out;
