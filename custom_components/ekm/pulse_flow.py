"""Options steps for the pulse inputs: which meter, then what each of its inputs counts.

Mixed into the options flow (``EkmOptionsFlow``, an ``OptionsFlowWithReload``): the menu's
"pulse_inputs" entry opens :meth:`PulseInputsFlowMixin.async_step_pulse_inputs`. The
result keeps every other option and replaces the chosen meter's inputs (see
``pulse.py`` for the stored shape).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
import probatio as vol

from .coordinator import EkmCloudCoordinator
from .pulse import (
    CONF_PULSE_INPUTS,
    INPUTS,
    UNITS,
    PulseInput,
    PulseKind,
    parse_pulse_inputs,
    unit_error,
)

if TYPE_CHECKING:
    from . import EkmConfigEntry

CONF_METER: Final = "meter"
CONF_KIND: Final = "kind"
CONF_PER_PULSE: Final = "per_pulse"
CONF_UNIT: Final = "unit"
NOTHING: Final = "nothing"
_KIND_SELECTOR: Final = SelectSelector(
    SelectSelectorConfig(
        options=[NOTHING, *(str(kind) for kind in PulseKind)],
        translation_key="pulse_kind",
        mode=SelectSelectorMode.DROPDOWN,
    )
)
_UNIT_SELECTOR: Final = SelectSelector(
    SelectSelectorConfig(
        options=[SelectOptionDict(value=unit, label=unit) for unit in UNITS],
        mode=SelectSelectorMode.DROPDOWN,
    )
)
_AMOUNT_SELECTOR: Final = NumberSelector(
    NumberSelectorConfig(min=0, step="any", mode=NumberSelectorMode.BOX)
)


def _label(address: str, names: dict[str, str]) -> str:
    return f"{address} ({names[address]})" if names.get(address) else address


class PulseInputsFlowMixin(OptionsFlow):
    """``pulse_inputs`` (pick a meter) and ``pulse_meter`` (its inputs 1-3)."""

    _pulse_meter: str | None = None

    def _pulse_names(self) -> dict[str, str]:
        entry: EkmConfigEntry = self.config_entry
        coordinator = entry.runtime_data.coordinator if hasattr(entry, "runtime_data") else None
        if isinstance(coordinator, EkmCloudCoordinator):
            return {a: d.name for a, d in coordinator.account_devices.items() if d.name}
        return {}

    def _pulse_addresses(self) -> list[str]:
        """Meters whose newest reading counts pulses."""
        entry: EkmConfigEntry = self.config_entry
        if not hasattr(entry, "runtime_data"):
            return []
        readings = entry.runtime_data.coordinator.data.readings
        return sorted(a for a, r in readings.items() if "Pulse_Cnt_1" in r.values)

    async def async_step_pulse_inputs(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Choose the meter whose pulse inputs to set up."""
        addresses = self._pulse_addresses()
        if not addresses:
            return self.async_abort(reason="no_pulse_meters")
        if user_input is not None and user_input.get(CONF_METER) in addresses:
            self._pulse_meter = user_input[CONF_METER]
            return await self.async_step_pulse_meter()
        names = self._pulse_names()
        current = parse_pulse_inputs(self.config_entry.options)
        configured = "; ".join(
            f"{_label(address, names)}: "
            + ", ".join(
                f"input {n} {i.kind.value} ({i.per_pulse:g} {i.unit} per pulse)"
                for n, i in sorted(inputs.items())
            )
            for address, inputs in sorted(current.items())
        )
        schema = vol.Schema(
            {
                vol.Required(CONF_METER, default=addresses[0]): SelectSelector(
                    SelectSelectorConfig(
                        options=[
                            SelectOptionDict(value=a, label=_label(a, names)) for a in addresses
                        ],
                        mode=SelectSelectorMode.LIST,
                    )
                )
            }
        )
        return self.async_show_form(
            step_id="pulse_inputs",
            data_schema=schema,
            description_placeholders={"configured": configured or "none"},
        )

    async def async_step_pulse_meter(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """What each input of the meter counts, how much one pulse is and its unit."""
        address = self._pulse_meter
        if address is None:
            return await self.async_step_pulse_inputs()
        options = self.config_entry.options
        current = parse_pulse_inputs(options).get(address, {})
        placeholders = {"meter": _label(address, self._pulse_names()), "input": ""}
        errors: dict[str, str] = {}
        if user_input is not None:
            chosen: dict[int, PulseInput] = {}
            for n in INPUTS:
                fields = user_input.get(f"input_{n}") or {}
                kind = fields.get(CONF_KIND, NOTHING)
                if kind == NOTHING:
                    continue
                error, pulse = _check(address, n, PulseKind(kind), fields)
                if error is not None:
                    errors["base"] = error
                    placeholders["input"] = str(n)
                    break
                assert pulse is not None
                chosen[n] = pulse
            if not errors:
                raw = options.get(CONF_PULSE_INPUTS)
                new = dict(raw) if isinstance(raw, dict) else {}
                new.pop(address, None)
                if chosen:
                    new[address] = {str(n): p.as_option() for n, p in chosen.items()}
                return self.async_create_entry(data={**options, CONF_PULSE_INPUTS: new})
        schema: dict[Any, Any] = {}
        for n in INPUTS:
            given = (user_input or {}).get(f"input_{n}") or {}
            pulse = current.get(n)
            kind = given.get(CONF_KIND) or (str(pulse.kind) if pulse else NOTHING)
            amount = given.get(CONF_PER_PULSE, pulse.per_pulse if pulse else None)
            unit = given.get(CONF_UNIT) or (pulse.unit if pulse else None)
            schema[vol.Required(f"input_{n}")] = section(
                vol.Schema(
                    {
                        vol.Required(CONF_KIND, default=kind): _KIND_SELECTOR,
                        vol.Optional(
                            CONF_PER_PULSE, description={"suggested_value": amount}
                        ): _AMOUNT_SELECTOR,
                        vol.Optional(
                            CONF_UNIT, description={"suggested_value": unit}
                        ): _UNIT_SELECTOR,
                    }
                ),
                {"collapsed": False},
            )
        return self.async_show_form(
            step_id="pulse_meter",
            data_schema=vol.Schema(schema),
            errors=errors,
            description_placeholders=placeholders,
        )


def _check(
    address: str, number: int, kind: PulseKind, fields: dict[str, Any]
) -> tuple[str | None, PulseInput | None]:
    """(error, None) or (None, the input) for one input's fields."""
    try:
        per_pulse = float(fields.get(CONF_PER_PULSE) or 0)
    except TypeError, ValueError:
        per_pulse = 0.0
    if not (per_pulse > 0 and math.isfinite(per_pulse)):
        return "per_pulse_invalid", None
    unit = str(fields.get(CONF_UNIT) or "")
    if (error := unit_error(kind, unit)) is not None:
        return error, None
    return None, PulseInput(address, number, kind, per_pulse, unit)
