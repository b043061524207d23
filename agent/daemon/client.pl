# The provisioner's client where perl is at hand (Debian's perl-base is Essential). Terraform starts one provisioner
# process per host, all at once; a node process costs about 100 ms of CPU before it does anything, perl with a socket
# about 20 ms, and on two cores a hundred hosts' provisioners are that many seconds (docs/decisions.md). This client
# only hands the run to the agent daemon, exactly as agent/daemon/client.ts does, and relays its output and exit
# code. Whatever it cannot do the usual way it leaves to the node loader, by exiting 86 before it has sent anything:
# the daemon turned off, a runtime folder that is not private, no node on PATH, no daemon within 15 s.
#
#   perl client.pl PACKAGE VERB [OPTION...]   (PACKAGE: the real path of the project's own tula-dsr, found by the loader)
use strict;
use warnings;
use Socket qw(PF_UNIX SOCK_STREAM pack_sockaddr_un);
use Fcntl qw(O_WRONLY O_CREAT O_EXCL O_APPEND);
use Cwd qw(getcwd);

my ($package, @argv) = @ARGV;
my $HANDOVER = 86;
my $START_WAIT_S = 15;
my $STALE_LOCK_S = 10;
# daemons answering "stale" replaced before the node loader takes over (STALE_ATTEMPTS in client.ts)
my $STALE_ATTEMPTS = 3;

exit $HANDOVER if ($ENV{TULA_DSR_DAEMON} // '') =~ /^(0|off|false|no)$/i;

# as runtimeDir (agent/daemon/paths.ts): a folder only this user may enter is what keeps others from the daemon
sub runtime_dir {
  my $tmp = $ENV{TMPDIR} || $ENV{TMP} || $ENV{TEMP} || '/tmp';
  $tmp =~ s{(?<=.)/+$}{};
  my $dir = $ENV{TULA_DSR_RUNTIME_DIR} || ($ENV{XDG_RUNTIME_DIR} ? "$ENV{XDG_RUNTIME_DIR}/tula-dsr" : "$tmp/tula-dsr-$<");
  mkdir $dir, 0700;
  my @st = lstat $dir;
  return undef unless @st && -d _ && $st[4] == $< && ($st[2] & 0077) == 0;
  return $dir;
}

# the node the loader would run, which the daemon must be running too
sub path_node {
  for my $d (split /:/, $ENV{PATH} // '') {
    return "$d/node" if $d ne '' && -f "$d/node" && -x _;
  }
  return undef;
}

my $dir = runtime_dir() // exit $HANDOVER;
my $node = path_node() // exit $HANDOVER;
my @pkg = stat $package or exit $HANDOVER;
# one door per installed package; the daemon behind it checks on every request that it still runs that package's
# code and this node (a rebuild, an upgrade, another node on PATH: it answers "stale" and stops)
my $socket_path = "$dir/agent-door-$pkg[0]-$pkg[1].sock";

sub try_connect {
  socket(my $s, PF_UNIX, SOCK_STREAM, 0) or return undef;
  return connect($s, pack_sockaddr_un($socket_path)) ? $s : undef;
}

sub take_spawn_lock {
  my $lock = "$socket_path.spawn";
  return 1 if sysopen(my $fh, $lock, O_WRONLY | O_CREAT | O_EXCL, 0600);
  my @st = stat $lock;
  unlink $lock if @st && time - $st[9] > $STALE_LOCK_S;
  return 0;
}

# the daemon gets no environment of the caller's but PATH: it must not keep a run's spec or passphrase
sub spawn_daemon {
  my $pid = fork;
  return if !defined $pid || $pid;
  eval {
    require POSIX;
    POSIX::setsid();
    my $idle = ($ENV{TULA_DSR_DAEMON_IDLE_MS} // '') =~ /^[0-9]+$/ && $ENV{TULA_DSR_DAEMON_IDLE_MS} > 0 ? $ENV{TULA_DSR_DAEMON_IDLE_MS} : '';
    sysopen(my $log, "$dir/daemon.log", O_WRONLY | O_CREAT | O_APPEND, 0600) or die;
    open(STDIN, '<', '/dev/null') or die;
    open(STDOUT, '>&', $log) or die;
    open(STDERR, '>&', $log) or die;
    # and nothing else of the caller's: an inherited pipe it kept open would hold up whoever waits for that pipe's
    # end (Terraform passes on descriptors its own caller left open; Node's spawn does not)
    my @inherited = (3 .. 1023);
    for my $listing ('/proc/self/fd', '/dev/fd') {
      next unless opendir(my $fds, $listing);
      @inherited = grep { /^[0-9]+$/ && $_ > 2 } readdir $fds;
      closedir $fds;
      last;
    }
    POSIX::close($_) for @inherited;
    chdir $dir or die;
    %ENV = (PATH => $ENV{PATH} // '/usr/sbin:/usr/bin:/sbin:/bin');
    exec { $node } 'node', "$package/dist/agent/daemon/server.js", $socket_path, $idle;
  };
  POSIX::_exit(1);
}

sub reach_daemon {
  my $deadline = time + $START_WAIT_S;
  for (;;) {
    my $s = try_connect();
    return $s if $s;
    return undef if time > $deadline;
    spawn_daemon() if take_spawn_lock();
    select(undef, undef, undef, 0.015);
  }
}

sub json_string {
  my $t = shift;
  $t =~ s/(["\\])/\\$1/g;
  $t =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
  return "\"$t\"";
}

# JSON.stringify escapes quotes, backslashes and control characters; \u above 0x7f only for a lone surrogate
my %ESCAPES = (n => "\n", t => "\t", r => "\r", b => "\b", f => "\f", '"' => '"', '\\' => '\\', '/' => '/');
sub json_unescape {
  my $t = shift;
  $t =~ s{\\(?:u([0-9a-fA-F]{4})|(.))}{defined $1 ? (hex($1) < 0x80 ? chr(hex $1) : "\xEF\xBF\xBD") : ($ESCAPES{$2} // $2)}gse;
  return $t;
}

sub write_all {
  my ($fh, $text) = @_;
  for (my $off = 0; $off < length $text;) {
    my $n = syswrite($fh, $text, length($text) - $off, $off);
    return unless $n;
    $off += $n;
  }
}

sub request_line {
  my $env = join ',', map { json_string($_) . ':' . json_string($ENV{$_}) } sort keys %ENV;
  return '{"v":1,"argv":[' . join(',', map { json_string($_) } @argv) . '],"cwd":' . json_string(getcwd()) . ',"node":' . json_string($node) . ',"env":{' . $env . "}}\n";
}

$SIG{PIPE} = 'IGNORE';
binmode STDOUT;
binmode STDERR;
my $request = request_line();
for (1 .. $STALE_ATTEMPTS) {
  my $s = reach_daemon() // exit $HANDOVER;
  binmode $s;
  # a daemon that refuses the request answers before it has read all of it: its answer is read all the same
  write_all($s, $request);
  my ($buffered, $code, $stale) = ('', undef, 0);
  while (sysread($s, my $chunk, 65536)) {
    $buffered .= $chunk;
    while ((my $nl = index($buffered, "\n")) >= 0) {
      my $line = substr($buffered, 0, $nl);
      substr($buffered, 0, $nl + 1) = '';
      if ($line =~ /^\{"(out|err)":"(.*)"\}$/s) {
        my ($stream, $text) = ($1 eq 'out' ? \*STDOUT : \*STDERR, json_unescape($2));
        write_all($stream, $text);
      } elsif ($line =~ /^\{"exit":([0-9]+)\}$/) {
        $code = $1;
      } elsif ($line =~ /^\{"stale":/) {
        $stale = 1;
      } else {
        print STDERR "tula-dsr: the agent daemon sent something that is not a result frame; giving up (see $dir/daemon.log)\n";
        exit 1;
      }
    }
  }
  close $s;
  next if $stale && !defined $code;
  exit $code if defined $code;
  print STDERR "tula-dsr: the agent daemon closed the connection before reporting a result (see $dir/daemon.log)\n";
  exit 1;
}
exit $HANDOVER;
