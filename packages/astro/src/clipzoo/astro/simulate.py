"""A seeded simulated variable-star set with matching light curves, spectra and catalogue metadata.

Five classes with periods and amplitudes in the ranges of the literature (Percy, *Understanding Variable
Stars*, 2007; Gaia DR3 variability papers): eclipsing binaries, RR Lyrae-like pulsators, rotational
(spotted) variables, delta-Scuti-like pulsators and long-period (Mira/semi-regular) variables. Each
modality alone leaves classes ambiguous, as in real surveys:

- light curves are phase-folded by the catalogue period and standardised, so rotational, delta-Scuti
  and long-period variables all look like noisy sinusoids; eclipses and the RR Lyrae saw-tooth stand out;
- spectra depend on effective temperature and metallicity (black body, Balmer, Ca II, Mg b, Na D and TiO
  features): eclipsing binaries span every temperature, delta Scuti and RR Lyrae overlap;
- metadata (magnitudes, colours, parallax, proper motion, galactic latitude, RUWE, period, amplitude,
  range, Teff) are noisy with values missing at random; eclipsing-binary and rotational periods overlap.

Each star goes through the same preprocessing as real data (:func:`preprocess_lightcurve`,
:func:`spectrum_array`, :class:`FeatureStats`), with irregular sampling, seasonal gaps, noise, bad
pixels and missing modalities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from clipzoo.astro.catalogs import FEATURE_NAMES, FeatureStats, raw_feature_vector
from clipzoo.astro.lightcurves import LightCurve, LightCurvePreprocess, preprocess_lightcurve
from clipzoo.astro.spectra import SpectralGrid, Spectrum, spectrum_array

CLASSES: tuple[str, ...] = ("EB", "RRL", "ROT", "DSCT", "LPV")
CLASS_NAMES = {"EB": "eclipsing binary", "RRL": "RR Lyrae-like pulsator", "ROT": "rotational (spotted) variable",
               "DSCT": "delta-Scuti-like pulsator", "LPV": "long-period variable"}

# period [d] (log-uniform unless noted), peak-to-peak amplitude [fraction of flux], Teff [K], M_G, [Fe/H]
_CLASS_PARAMS = {
    "EB": dict(period=(0.3, 10.0), amp=(0.08, 0.6), teff=(4500, 9000), absg=(0.5, 5.0), feh=(-0.5, 0.3)),
    "RRL": dict(period=(0.45, 0.85), amp=(0.25, 0.8), teff=(6100, 7400), absg=(0.3, 0.9), feh=(-2.2, -1.0)),
    "ROT": dict(period=(1.0, 30.0), amp=(0.01, 0.06), teff=(3600, 5600), absg=(4.0, 8.0), feh=(-0.4, 0.3)),
    "DSCT": dict(period=(0.03, 0.2), amp=(0.01, 0.08), teff=(6900, 8500), absg=(1.0, 3.0), feh=(-0.3, 0.3)),
    "LPV": dict(period=(90.0, 450.0), amp=(0.4, 0.95), teff=(2700, 3600), absg=(-3.0, 0.0), feh=(-0.5, 0.2)),
}

SIM_GRID = SpectralGrid(3600.0, 9800.0, 128)
SIM_LIGHTCURVE = LightCurvePreprocess(length=64, fold="catalog")


@dataclass(frozen=True)
class SimulationConfig:
    n_per_class: int = 100
    seed: int = 0
    lightcurve: LightCurvePreprocess = SIM_LIGHTCURVE
    grid: SpectralGrid = SIM_GRID
    missing_spectrum: float = 0.1  # fraction of stars without a spectrum
    missing_feature: float = 0.2  # fraction of metadata values missing at random
    baseline_days: float = 900.0


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _light_curve_shape(cls: str, phase: np.ndarray, amp: float, rng) -> np.ndarray:
    """Relative flux variation (mean ~0) at the given phases."""
    if cls == "EB":
        width = rng.uniform(0.03, 0.09)
        secondary = rng.uniform(0.1, 0.9)
        d = np.minimum(np.abs(phase), 1 - np.abs(phase))
        d2 = np.abs(phase - 0.5)
        return -amp * (np.exp(-0.5 * (d / width) ** 2) + secondary * np.exp(-0.5 * (d2 / width) ** 2))
    if cls == "RRL":  # fast rise, slow decline: a Fourier saw-tooth with the RRab amplitude ratios
        return amp * sum((0.5 ** (k - 1)) * np.sin(2 * np.pi * k * phase + 0.3 * k) / k for k in range(1, 5)) / 1.4
    if cls == "ROT":
        harmonic = rng.uniform(0.0, 0.4) * np.sin(4 * np.pi * phase + rng.uniform(0, 6))
        return amp / 2 * (np.sin(2 * np.pi * phase) + harmonic)
    if cls == "DSCT":
        return amp / 2 * np.sin(2 * np.pi * phase)
    return amp / 2 * np.sin(2 * np.pi * phase)  # LPV


def simulate_lightcurve(cls: str, period: float, amp: float, rng, baseline: float) -> LightCurve:
    """Irregularly sampled survey light curve with seasonal gaps, noise and extra-variability per class."""
    n = int(rng.integers(250, 700))
    t = np.sort(rng.uniform(0, baseline, n))
    season = 365.25
    t = t[(t % season) < rng.uniform(200, 300)]  # the star is not observable for part of each year
    phase = np.mod(t / period + rng.uniform(), 1.0)
    signal = _light_curve_shape(cls, phase, amp, rng)
    if cls == "ROT":  # spots evolve: amplitude and phase drift over the baseline
        signal *= 1 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(50, 200))
    if cls == "DSCT":  # a second, non-commensurate mode smears the folded curve
        signal += amp / 2 * rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * t / (period * rng.uniform(0.7, 0.8)))
    if cls == "LPV":  # cycle-to-cycle amplitude changes
        signal *= 1 + 0.3 * np.sin(2 * np.pi * t / (period * rng.uniform(4, 8)))
    sigma = rng.uniform(0.003, 0.02) * np.ones_like(t)
    flux = 1.0 + signal + rng.normal(0, sigma)
    valid = np.ones(len(t), bool)
    valid[rng.random(len(t)) < 0.03] = False  # flagged cadences
    return LightCurve(t, flux, sigma, valid, {"mission": "simulated"})


def _planck(wave_aa: np.ndarray, teff: float) -> np.ndarray:
    lam = wave_aa * 1e-10
    h, c, k = 6.626e-34, 2.998e8, 1.381e-23
    return 1.0 / lam**5 / np.expm1(np.clip(h * c / (lam * k * teff), 1e-6, 700))


_LINES = {  # centre [Å] -> (relative strength function of teff, feh)
    "balmer": ([6563, 4861, 4340, 4102, 3970], lambda t, z: 0.5 * np.exp(-0.5 * ((t - 9000) / 2000) ** 2)),
    "ca_hk": ([3934, 3968], lambda t, z: 0.6 * 10 ** (0.3 * z) * np.clip((7500 - t) / 3500, 0.05, 1)),
    "metals": ([5175, 5893, 8498, 8542, 8662],
               lambda t, z: 0.35 * 10 ** (0.4 * z) * np.clip((7000 - t) / 3000, 0.05, 1)),
}


def simulate_spectrum(teff: float, feh: float, rng, wave: np.ndarray) -> Spectrum:
    flux = _planck(wave, teff)
    flux /= np.median(flux)
    absorb = np.zeros_like(wave)
    for centres, strength in _LINES.values():
        s = float(strength(teff, feh))
        for c in centres:
            absorb += s * np.exp(-0.5 * ((wave - c) / 6.0) ** 2)
    if teff < 3900:  # TiO bands of M stars: saw-tooth band heads
        depth = np.clip((3900 - teff) / 1000, 0, 0.8)
        for head in (6159, 6651, 7054, 7589, 8432):
            band = (wave > head) & (wave < head + 180)
            absorb[band] += depth * (1 - (wave[band] - head) / 180)
    flux = flux * np.exp(-absorb)
    snr = rng.uniform(8, 40)
    err = np.abs(flux) / snr + 1e-3
    flux = flux + rng.normal(0, err)
    valid = rng.random(wave.size) > 0.02
    if rng.random() < 0.3:  # a masked chunk (bad columns, dichroic gap)
        start = rng.integers(0, wave.size - 60)
        valid[start : start + int(rng.integers(10, 60))] = False
    return Spectrum(wave, flux, np.where(valid, 1 / err**2, 0.0), valid, {"survey_name": "simulated"})


def simulate_metadata(cls: str, period: float, amp: float, teff: float, absg: float, rng, missing: float
                      ) -> dict[str, float | None]:
    g = rng.uniform(10.0, 17.0)
    dist_pc = 10 ** ((g - absg + 5) / 5)
    bp_rp = 0.9 * (5800 / teff) ** 1.6 - 0.25 + rng.normal(0, 0.08)
    halo = cls == "RRL"
    values: dict[str, float | None] = {
        "g_mag": g,
        "bp_rp": bp_rp,
        "g_rp": 0.55 * bp_rp + 0.05 + rng.normal(0, 0.03),
        "parallax": 1000.0 / dist_pc + rng.normal(0, 0.05),
        "pmra": rng.normal(0, 40 if halo else 8),
        "pmdec": rng.normal(0, 40 if halo else 8),
        "gal_b": float(np.degrees(np.arcsin(rng.uniform(-1, 1)))) if halo else rng.normal(0, 15),
        "ruwe": rng.uniform(1.0, 2.5) if cls == "EB" and rng.random() < 0.5 else abs(rng.normal(1.0, 0.1)),
        "log_period": np.log10(period * (0.5 if cls == "EB" and rng.random() < 0.3 else 1.0)) + rng.normal(0, 0.05),
        "amplitude": 100 * amp * rng.uniform(0.6, 1.4),
        "range_pct": 100 * amp * rng.uniform(0.8, 1.6),
        "teff": teff + rng.normal(0, 250),
    }
    plx = values["parallax"]
    values["abs_g"] = g + 5 * np.log10(plx / 100) if plx and plx > 0 else None
    for name in FEATURE_NAMES:
        if rng.random() < missing:
            values[name] = None
    return values


def simulate_stars(cfg: SimulationConfig = SimulationConfig()) -> Iterator[dict[str, Any]]:
    """Raw simulated stars (light curve, spectrum or None, metadata values, class) in a seeded order."""
    rng = np.random.default_rng(cfg.seed)
    wave = np.arange(3500.0, 10000.0, 2.0)
    order = [c for c in CLASSES for _ in range(cfg.n_per_class)]
    rng.shuffle(order)
    for i, cls in enumerate(order):
        p = _CLASS_PARAMS[cls]
        period = _loguniform(rng, *p["period"]) if cls != "RRL" else float(rng.uniform(*p["period"]))
        amp = float(rng.uniform(*p["amp"]))
        teff = float(rng.uniform(*p["teff"]))
        absg = float(rng.uniform(*p["absg"]))
        feh = float(rng.uniform(*p["feh"]))
        lc = simulate_lightcurve(cls, period, amp, rng, cfg.baseline_days)
        spec = None if rng.random() < cfg.missing_spectrum else simulate_spectrum(teff, feh, rng, wave)
        meta = simulate_metadata(cls, period, amp, teff, absg, rng, cfg.missing_feature)
        yield {"index": i, "label": cls, "cls": CLASSES.index(cls), "period": period, "amplitude": amp,
               "teff": teff, "lightcurve": lc, "spectrum": spec, "metadata": meta}


def simulate_samples(cfg: SimulationConfig = SimulationConfig(), stats: FeatureStats | None = None
                     ) -> tuple[list[dict[str, Any]], FeatureStats]:
    """Simulated stars as shard samples (the crossmatch layout) and the metadata stats used."""
    from tqdm import tqdm

    stars = list(tqdm(simulate_stars(cfg), total=cfg.n_per_class * len(CLASSES), desc="simulate stars", unit="star",
                      leave=False, disable=cfg.n_per_class * len(CLASSES) < 2000))
    raws, masks = zip(*(raw_feature_vector(s["metadata"]) for s in stars))
    raw, mask = np.array(raws), np.array(masks)
    stats = stats or FeatureStats.fit(raw, mask)
    vectors = stats.transform(raw, mask)
    samples = []
    for star, vec, vmask in zip(stars, vectors, mask):
        lc_arr, lc_mask, lc_info = preprocess_lightcurve(star["lightcurve"], cfg.lightcurve, period=star["period"])
        if star["spectrum"] is not None:
            sp_arr, sp_mask, _ = spectrum_array(star["spectrum"], cfg.grid)
        else:
            sp_arr, sp_mask = np.zeros((cfg.grid.size, 2), np.float32), np.zeros(cfg.grid.size, bool)
        meta = {"ids": {"sim": star["index"]}, "label": star["label"], "class_name": CLASS_NAMES[star["label"]],
                "period": star["period"], "amplitude": star["amplitude"], "teff": star["teff"],
                "source": f"clipzoo.astro.simulate seed={cfg.seed}", "license": "CC0-1.0 (simulated)",
                "present": {"lightcurve": bool(lc_mask.any()), "spectrum": bool(sp_mask.any()),
                            "metadata": bool(vmask.any())}}
        samples.append({"__key__": f"sim{cfg.seed}_{star['index']:06d}", "lightcurve.npy": lc_arr,
                        "lightcurve_mask.npy": lc_mask, "spectrum.npy": sp_arr, "spectrum_mask.npy": sp_mask,
                        "metadata.npy": vec, "metadata_mask.npy": vmask, "json": meta, "cls": star["cls"]})
    return samples, stats
