"""shop: an order and payment back end that never loses or duplicates money, stock or coupons."""
