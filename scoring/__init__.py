"""Credit decisions, pure: model slices, scorecard scaling, grades. No I/O, no globals."""
