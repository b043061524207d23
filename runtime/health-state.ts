/** Whether a backend takes new flows as far as its check is concerned. */
export type Health = 'up' | 'down';

/** The state of one probe target: its health, since when, and how many results in a row argue against it. */
export interface HealthState {
  readonly health: Health;
  /** When the health last changed (ms since the epoch), or when the target was first seen. */
  readonly since: number;
  /** Results in a row that contradict `health`: failures while up, successes while down. */
  readonly streak: number;
}

export interface Thresholds {
  /** Failures in a row that take an up target down. */
  readonly fall: number;
  /** Successes in a row that bring a down target up. */
  readonly rise: number;
}

export interface HealthStep {
  readonly state: HealthState;
  /** Set when this result changed the health. */
  readonly changed?: Health;
}

/** A target starts up (today's behaviour: every backend takes flows) unless a saved state says it was down. */
export function initialHealth(now: number, saved?: { readonly health: Health; readonly since?: number }): HealthState {
  return { health: saved?.health ?? 'up', since: saved?.since ?? now, streak: 0 };
}

/**
 * Feeds one probe result: `fall` failures in a row take an up target down, `rise` successes in a row bring a down
 * target up, and a result that agrees with the current health resets the count.
 */
export function recordResult(state: HealthState, ok: boolean, thresholds: Thresholds, now: number): HealthStep {
  const agrees = ok === (state.health === 'up');
  if (agrees) return { state: state.streak === 0 ? state : { ...state, streak: 0 } };
  const streak = state.streak + 1;
  const needed = state.health === 'up' ? thresholds.fall : thresholds.rise;
  if (streak < needed) return { state: { ...state, streak } };
  const health: Health = state.health === 'up' ? 'down' : 'up';
  return { state: { health, since: now, streak: 0 }, changed: health };
}
