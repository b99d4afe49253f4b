"""Sensors and actuators declared in the configuration, driven through `machine` on a board.

Each entry of the config's "sensors" list names one device:
    {"name": "temp", "kind": "sensor" | "actuator", "unit": "Cel", "shares": 0,
     a sensor, one of  "adc": pin                      -> ADC.read_u16()
                       "pin": pin                      -> Pin.value()
                       "i2c": [bus, addr, reg, nbytes] -> big-endian unsigned of nbytes from reg
                       "sim": number or [numbers]      -> a constant, or the list in turn (unix)
       optional "scale" and "offset": value = raw * scale + offset;
     an actuator, one of "pin": pin                    -> an output pin, 0 or 1
                         "sim": "file"                 -> each value appended to the file as a
                                                          line; 0 or 1, or "min".."max" if given}
(No PWM output yet: machine.PWM's names would grow the qstr pool past the heap budget.)
`read(name, None)` returns a float or raises OSError(-1) unknown / OSError(-3) I/O error, the
codes of the WASM ABI's read_sensor; `read(name, value)` sets an actuator and returns the
set_actuator codes: 0, -1 not an actuator, -3 I/O error, -6 out of range. An actuator is
exclusive: the master gives it to one task at a time.
"""

try:
    import machine
except ImportError:  # the unix port: only simulated devices
    machine = None

from micropython import const

_DEVICE_NAME = const(1)  # pb: Device.name
_DEVICE_KIND = const(2)  # pb: Device.kind
_DEVICE_SHARES = const(3)  # pb: Device.shares
_DEVICE_UNIT = const(4)  # pb: Device.unit
_SENSOR = const(1)  # pb: DeviceKind.SENSOR
_ACTUATOR = const(2)  # pb: DeviceKind.ACTUATOR

_dev = {}  # name -> sensors: (reader, scale, offset); actuators: (writer, min, max, switch)


def _reader(e):
    if "sim" in e:
        v = e["sim"]
        if type(v) is not list:
            return lambda: v

        def step():  # the first value, moved to the end
            v.append(v.pop(0))
            return v[-1]
        return step
    if machine is None:
        raise OSError(-3)
    if "adc" in e:
        return machine.ADC(e["adc"]).read_u16
    if "pin" in e:  # (an actuator's pin is opened by setup)
        return machine.Pin(e["pin"], machine.Pin.IN).value
    if "i2c" in e:
        bus, addr, reg, n = e["i2c"]
        i2c = machine.I2C(bus)
        return lambda: int.from_bytes(i2c.readfrom_mem(addr, reg, n), "big")
    raise OSError(-3)


def setup(items):
    """Open every configured device; returns the agent's Device list (defaults left out, as
    the wire wants)."""
    inv = []
    for e in items:
        name = e["name"]
        act = e.get("kind") == "actuator"
        try:
            if act:
                # Inline, and a lambda rather than a named function: every new name is a qstr,
                # and the agent's pool has room for only a few more (bench/README.md).
                if "sim" in e:
                    f = open(e["sim"], "a")
                    w = lambda value, f=f: print(value, file=f) or f.flush()  # noqa: E731
                elif machine is not None and "pin" in e:
                    w = machine.Pin(e["pin"], machine.Pin.OUT).value
                else:
                    raise OSError(-3)
                _dev[name] = (w, e.get("min", 0), e.get("max", 1), "min" not in e)
            else:
                _dev[name] = (_reader(e), e.get("scale", 1), e.get("offset", 0))
        except Exception as x:
            print("edgerm: device", name, "unavailable:", x)
            continue
        d = {_DEVICE_NAME: name,
             _DEVICE_KIND: _ACTUATOR if act else _SENSOR}
        if e.get("shares"):
            d[_DEVICE_SHARES] = e["shares"]
        if e.get("unit"):
            d[_DEVICE_UNIT] = e["unit"]
        inv.append(d)
    return inv


def read(name, value):
    """A sensor's reading (`value` None); else set the actuator `name` and return its code.
    (One function for both, without defaults: a second function, or a defaults tuple, costs
    heap on every board.)"""
    d = _dev.get(name)
    if value is not None:
        if d is None or len(d) < 4:
            return -1
        try:
            value = float(value)
        except Exception:
            return -6
        # NaN fails both comparisons: out of range, as the ABI says.
        if not d[1] <= value <= d[2] or (d[3] and value != d[1] and value != d[2]):
            return -6
        try:
            d[0](value)
        except Exception:
            return -3
        return 0
    if d is None or len(d) > 3:
        raise OSError(-1)
    try:
        return float(d[0]()) * d[1] + d[2]
    except Exception:
        raise OSError(-3)

