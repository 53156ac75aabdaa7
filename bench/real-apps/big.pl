# SPDX-License-Identifier: MIT
# bench/real-apps: a Perl heap larger than the budget. A hash of N entries (string keys,
# string values of uneven length), N random lookups with every value checked, then the keys
# sorted (every comparison reads two keys scattered over the heap). Prints one line that
# must be the same in every configuration.
use strict;
use warnings;

my $n = shift // die "usage: big.pl N\n";
sub value { my $i = shift; return "value-" . ($i * 7919 % 1000003) . ("x" x ($i % 40)); }

my %h;
$h{"key$_"} = value($_) for 0 .. $n - 1;
srand(42);
my $total = 0;
for (1 .. $n) {
	my $k = int(rand($n));
	my $v = $h{"key$k"};
	die "wrong value for key$k: $v\n" unless $v eq value($k);
	$total += length($v);
}
my @keys = sort keys %h;
print "ok ", scalar(@keys), " $total $keys[0] $keys[-1]\n";
