"""Particles swept into bowls by two effectors, on pymunk's 2-D rigid-body physics.

A square table ``size`` x ``size`` (units: one cell of the observation grid) with walls.
Particles are dynamic discs with mass and friction; the table's friction is the space's
damping (a particle that is no longer pushed slides to a stop within a fraction of a
second). Two effectors are kinematic discs, spatulas, driven by velocity commands: they
push the particles they bump into, pass over each other and stop at the walls. An empty
spatula that touches a free particle scoops it: a pivot joint holds the particle under
the spatula's centre (the two no longer collide) and drags it along, against the other
particles. A bowl is a circular pocket: a particle whose centre comes within
``capture_radius`` of the bowl's centre drops in (off the spatula, if it was carried) and
is held there: it leaves the physics and stays in for the rest of the episode.

Why spatulas scoop rather than only push: ``docs/domains/sweep.md`` (table and physics).

Configurations (bowl centres, particle and effector positions) are drawn from a seed:
the same seed and the same commands give the same episode, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymunk

N_EFFECTORS = 2


@dataclass(frozen=True)
class SweepConfig:
    """Geometry and physics of the table (lengths in cells, times in seconds)."""

    size: int = 16
    particle_radius: float = 0.75
    effector_radius: float = 1.0
    bowl_radius: float = 2.0
    n_bowls: int = 2
    max_speed: float = 4.0  # an effector's largest speed per axis, cells/s
    control_dt: float = 0.2  # seconds per command
    substeps: int = 4  # physics steps per command
    damping: float = 0.02  # fraction of a free particle's velocity left after one second
    friction: float = 0.6
    max_steps: int = 150  # commands per episode (the expert needs ~25 for 4 particles, ~60 for 12)

    @property
    def capture_radius(self) -> float:
        """A particle whose centre is this close to a bowl's centre is in (it lies inside the rim)."""
        return self.bowl_radius - 0.5 * self.particle_radius


def sample_configuration(seed: int, n_particles: int, cfg: SweepConfig) -> dict[str, np.ndarray]:
    """Bowl centres (n_bowls, 2) on cell centres, particle (n, 2) and effector (2, 2) positions.

    Bowls keep off the walls and apart; particles start outside the bowls, off the walls and
    apart; effectors start clear of the particles."""
    rng = np.random.default_rng(seed)
    s, rp, re = cfg.size, cfg.particle_radius, cfg.effector_radius
    margin = cfg.bowl_radius + 1.5
    bowls: list[np.ndarray] = []
    for _ in range(10_000):
        if len(bowls) == cfg.n_bowls:
            break
        c = np.floor(rng.uniform(margin, s - margin, 2)) + 0.5
        if all(np.linalg.norm(c - b) >= 2 * cfg.bowl_radius + 3 for b in bowls):
            bowls.append(c)
    particles: list[np.ndarray] = []
    for _ in range(100_000):
        if len(particles) == n_particles:
            break
        p = rng.uniform(2.5, s - 2.5, 2)
        if all(np.linalg.norm(p - b) > cfg.bowl_radius + rp + 0.5 for b in bowls) and \
                all(np.linalg.norm(p - q) >= 2 * rp + 0.3 for q in particles):
            particles.append(p)
    effectors: list[np.ndarray] = []
    for _ in range(100_000):
        if len(effectors) == N_EFFECTORS:
            break
        e = rng.uniform(re + 0.5, s - re - 0.5, 2)
        if all(np.linalg.norm(e - p) >= rp + re + 0.3 for p in particles) and \
                all(np.linalg.norm(e - f) >= 2 * re for f in effectors):
            effectors.append(e)
    if len(bowls) < cfg.n_bowls or len(particles) < n_particles or len(effectors) < N_EFFECTORS:
        raise ValueError(f"cannot place {cfg.n_bowls} bowls, {n_particles} particles and {N_EFFECTORS} effectors "
                         f"on a {s} x {s} table (seed {seed}); use fewer particles or a larger data.size")
    return {"bowls": np.array(bowls), "particles": np.array(particles), "effectors": np.array(effectors)}


class SweepEnv:
    """One episode. ``step(command)`` takes the effectors' velocities (2, 2) in cells/s
    (clipped to ``max_speed`` per axis) and returns whether the episode is over."""

    def __init__(self, seed: int, n_particles: int, cfg: SweepConfig = SweepConfig()) -> None:
        self.cfg = cfg
        self.seed = seed
        conf = sample_configuration(seed, n_particles, cfg)
        self.bowls = conf["bowls"]
        self.space = pymunk.Space()
        self.space.damping = cfg.damping
        s = cfg.size
        t = 2.0  # thick walls outside the table: a particle squeezed against one cannot tunnel through
        walls = [pymunk.Poly.create_box_bb(self.space.static_body, pymunk.BB(*bb))
                 for bb in ((-t, -t, s + t, 0), (-t, s, s + t, s + t), (-t, 0, 0, s), (s, 0, s + t, s))]
        for w in walls:
            w.friction = cfg.friction
        self.space.add(*walls)
        self.particles: list[pymunk.Body] = []
        for p in conf["particles"]:
            body = pymunk.Body(1.0, pymunk.moment_for_circle(1.0, 0, cfg.particle_radius))
            body.position = tuple(p)
            shape = pymunk.Circle(body, cfg.particle_radius)
            shape.friction = cfg.friction
            self.space.add(body, shape)
            self.particles.append(body)
        self.effectors: list[pymunk.Body] = []
        for k, e in enumerate(conf["effectors"]):
            body = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
            body.position = tuple(e)
            shape = pymunk.Circle(body, cfg.effector_radius)
            shape.friction = cfg.friction
            shape.filter = pymunk.ShapeFilter(group=k + 1)  # a carried particle joins its spatula's group
            self.space.add(body, shape)
            self.effectors.append(body)
        self.carrying = np.full(N_EFFECTORS, -1, dtype=np.int64)  # the particle each spatula holds
        self._joints: list[pymunk.Constraint | None] = [None] * N_EFFECTORS
        self.captured = np.zeros(len(self.particles), dtype=bool)
        self.held_at = np.zeros((len(self.particles), 2))  # where a captured particle lies
        self.steps = 0
        self._capture()

    # ------------------------------------------------------------ state
    @property
    def n_particles(self) -> int:
        return len(self.particles)

    def particle_positions(self) -> np.ndarray:
        """(n, 2): free particles where they are, captured ones where they dropped in."""
        free = np.array([tuple(b.position) for b in self.particles], dtype=np.float64).reshape(-1, 2)
        return np.where(self.captured[:, None], self.held_at, free)

    def effector_positions(self) -> np.ndarray:
        return np.array([tuple(b.position) for b in self.effectors], dtype=np.float64)

    def fraction_in_bowls(self) -> float:
        return float(self.captured.mean()) if self.n_particles else 1.0

    @property
    def solved(self) -> bool:
        return bool(self.captured.all())

    @property
    def done(self) -> bool:
        return self.solved or self.steps >= self.cfg.max_steps

    # ------------------------------------------------------------ dynamics
    def _capture(self) -> None:
        for i, body in enumerate(self.particles):
            if self.captured[i]:
                continue
            p = np.array(tuple(body.position))
            if (np.linalg.norm(self.bowls - p, axis=1) < self.cfg.capture_radius).any():
                self.captured[i] = True
                self.held_at[i] = p
                for k in np.flatnonzero(self.carrying == i):  # off the spatula
                    self.space.remove(self._joints[k])
                    self._joints[k], self.carrying[k] = None, -1
                self.space.remove(body, *body.shapes)  # in the pocket: out of the physics for good

    def _scoop(self) -> None:
        """An empty spatula touching a free, uncarried particle picks it up."""
        touch = self.cfg.particle_radius + self.cfg.effector_radius + 0.05
        for k, eff in enumerate(self.effectors):
            if self.carrying[k] >= 0:
                continue
            e = np.array(tuple(eff.position))
            for i, body in enumerate(self.particles):
                if self.captured[i] or i in self.carrying:
                    continue
                if np.linalg.norm(np.array(tuple(body.position)) - e) <= touch:
                    joint = pymunk.PivotJoint(eff, body, (0, 0), (0, 0))
                    joint.max_force = 2_000.0
                    joint.error_bias = 0.05 ** 60  # close the gap quickly
                    for shape in body.shapes:
                        shape.filter = pymunk.ShapeFilter(group=k + 1)
                    self.space.add(joint)
                    self._joints[k], self.carrying[k] = joint, i
                    break

    def step(self, command: np.ndarray) -> bool:
        """Apply velocities (2, 2) for one control interval; True when the episode is over."""
        cfg = self.cfg
        v = np.clip(np.asarray(command, dtype=np.float64).reshape(N_EFFECTORS, 2), -cfg.max_speed, cfg.max_speed)
        dt = cfg.control_dt / cfg.substeps
        lo, hi = cfg.effector_radius, cfg.size - cfg.effector_radius
        for _ in range(cfg.substeps):
            for body, vel in zip(self.effectors, v):
                # a kinematic body ignores walls: stop it at them
                nxt = np.array(tuple(body.position)) + vel * dt
                vel = np.where((nxt < lo) | (nxt > hi), 0.0, vel)
                body.velocity = tuple(vel)
            self.space.step(dt)
            self._capture()
            self._scoop()
        self.steps += 1
        return self.done
