import { sectionLine } from '../../model/sections';
import { readLineCommand, renderCommand, sha256AssignCommand } from '../../model/shell';
import { STATE_DIR } from '../state';

/**
 * The kernel's nftables ruleset generation: a counter every committed transaction moves by one (an empty one does
 * not), in the host's network namespace. nft 1.0.6 asks the kernel for it (NFT_MSG_GETGEN) before every command but
 * never prints it, except with `--echo` or in `nft monitor`, which load every set element first (seconds with
 * 100,000 flows; see docs/decisions.md). This Perl asks the kernel directly over netlink, in about 40 ms; Perl's
 * base package is on every Debian-like host. Where it is missing the command fails and the agent lists the table as
 * before. It prints the number, or fails.
 */
const GETGEN_PERL = [
  // socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER); one NFT_MSG_GETGEN request (nfgenmsg: AF_UNSPEC, version 0)
  'socket(my $s, 16, 3, 12) or exit 1;',
  'send($s, pack("LSSLLCCn", 20, 0xa10, 1, 1, 0, 0, 0, 0), 0, pack("SSLL", 16, 0, 0, 0)) or exit 1;',
  'defined(recv($s, my $b, 4096, 0)) or exit 1;',
  // the answer is NFT_MSG_NEWGEN; its attribute NFTA_GEN_ID (1) holds the generation, big-endian
  'my ($l, $t) = unpack("LS", $b); exit 1 if $t != 0xa0f;',
  'for (my $o = 20; $o + 8 <= $l; $o += (unpack("S", substr($b, $o, 2)) + 3) & ~3) {',
  ' if ((unpack("S", substr($b, $o + 2, 2)) & 0x7fff) == 1) { print unpack("N", substr($b, $o + 4, 4)), "\\n"; exit 0 } }',
  'exit 1',
].join(' ');

export const NFT_GENERATION_COMMAND = `${renderCommand(['perl', '-e', GETGEN_PERL])} 2>/dev/null`;

/**
 * Where the apply records, right after its own load of a table, the generation that load created and the hash of
 * the ruleset it loaded (`<generation> <sha256>`): only when the generation moved by exactly one across the load,
 * so that no other transaction slipped in. While the kernel still reports that generation, nothing changed any
 * nft table since, and the agent need not list the table to know it.
 */
export function nftGenerationFile(family: string, name: string): string {
  return `${STATE_DIR}/${family}-${name}.generation`;
}

/**
 * Shell for an apply step: runs `load` (one `nft -f` transaction) and records the generation it created (see
 * nftGenerationFile), or no record when it cannot tell. The record goes first, so that a run killed in between
 * leaves none. Its exit status is the load's: recording never fails the step. `from`: the load is right only for
 * the ruleset of that generation; the step fails with `moved` on stderr before loading when the kernel reports
 * another (the generation read before the load serves both, one process fewer).
 */
export function recordedLoad(family: string, name: string, load: string, rulesetHash: string, from?: { generation: number; moved: string }): string {
  const file = nftGenerationFile(family, name);
  const tmp = `${file}.tula-tmp`;
  const record = [
    `g1=$(${NFT_GENERATION_COMMAND})`,
    `[ -n "$g0" ] && [ -n "$g1" ] && [ "$g1" -eq $((g0 + 1)) ]`,
    `printf '%s %s\\n' "$g1" ${renderCommand([rulesetHash])} > ${renderCommand([tmp])}`,
    cmd('mv', '-f', tmp, file),
  ].join(' && ');
  const check = from ? ` && { [ "$g0" = ${renderCommand([String(from.generation)])} ] || { echo ${renderCommand([from.moved])} >&2; false; }; }` : '';
  return `${cmd('rm', '-f', file)} && { g0=$(${NFT_GENERATION_COMMAND}) || g0=''; }${check} && ${load} && { ${record} || ${cmd('rm', '-f', tmp, file)}; :; }`;
}

const cmd = (...argv: string[]) => renderCommand(argv);

/**
 * Facts shell: whether the table is exactly as tula-dsr's last load left it, i.e. the kernel still reports the
 * generation recorded after that load, the state file records that load's ruleset hash, and no interrupted run
 * left a journal. Sets `$unchanged` to yes or no, and prints `live=<generation>`, `recorded=<record>` and `unchanged=yes|no`.
 */
export function generationFactsCommands(family: string, name: string, statePath: string, journal: string): string[] {
  return [
    `g=$(${NFT_GENERATION_COMMAND}) || g=''; ${readLineCommand('r', nftGenerationFile(family, name))}; unchanged=no`,
    `if [ -n "$g" ] && [ "$g" = "\${r%% *}" ] && [ ! -e ${renderCommand([journal])} ] && grep -qF "\\"\${r#* }\\"" ${renderCommand([statePath])} 2>/dev/null; then unchanged=yes; fi`,
    'echo "live=$g"; echo "recorded=$r"; echo "unchanged=$unchanged"',
  ];
}

/**
 * The facts' verdict (see generationFactsCommands): the generation now, and the record when the table is unchanged,
 * known from the generation alone or (`rearmed`, see generationRearmCommands) from a listing that matched.
 */
export function parseGenerationFacts(
  text: string,
  rearmed = '',
): { generation?: number; unchangedSince?: { generation: number; rulesetHash: string; listed: boolean } } {
  const live = /^live=(\d+)$/m.exec(text)?.[1];
  const verdict = rearmed || text;
  const recorded = /^recorded=(\d+) ([0-9a-f]{64})$/m.exec(verdict);
  const unchanged = /^unchanged=(yes|listed)$/m.exec(verdict)?.[1];
  return {
    ...(live !== undefined ? { generation: Number(live) } : {}),
    ...(unchanged && recorded ? { unchangedSince: { generation: Number(recorded[1]), rulesetHash: recorded[2], listed: unchanged === 'listed' } } : {}),
  };
}

/**
 * Facts shell, after a full listing found the table as the last load left it (its listing hashes to the recorded
 * one, `$h`): records the generation read before the listing (`$g`) as vouching for the ruleset hash the state
 * records, if it did not move while listing, so that the next run need not list the table again after another
 * program's transaction (on another table, or the flows a test writes). Not after an incremental update: its
 * recorded listing describes an older table, which an edit by hand could restore exactly.
 */
export function generationRearmCommands(family: string, name: string, statePath: string, journal: string): string[] {
  const file = nftGenerationFile(family, name);
  const listingPath = `${STATE_DIR}/${family}-${name}.listing`;
  const listing = renderCommand([listingPath]);
  const state = renderCommand([statePath]);
  return [
    `if [ -n "$g" ] && [ "$e" = yes ] && [ -f ${listing} ] && { ${sha256AssignCommand('hr', listingPath)}; [ "$h" = "$hr" ]; } && [ ! -e ${renderCommand([journal])} ] \\`,
    `  && ! grep -qF ${renderCommand([`"listingHash": "stale`])} ${state} 2>/dev/null && [ "$g" = "$(${NFT_GENERATION_COMMAND})" ]; then`,
    `  rh=$(sed -n 's/^ *"rulesetHash": "\\([0-9a-f]\\{64\\}\\)".*/\\1/p' ${state} 2>/dev/null | head -n 1)`,
    `  if [ -n "$rh" ] && printf '%s %s\\n' "$g" "$rh" > ${renderCommand([`${file}.tula-tmp`])} && ${cmd('mv', '-f', `${file}.tula-tmp`, file)}; then`,
    `    ${sectionLine(`nftrearm ${family}_${name}`)}; echo "recorded=$g $rh"; echo "unchanged=listed"`,
    '  fi',
    'fi',
  ];
}
