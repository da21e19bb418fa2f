"""The three services an order takes from, as the saga calls them.

Each step is keyed by the order id on the other side (a repeat is a no-op that returns the first
result; a step arriving after the order's cancellation was recorded is refused), and a step the
order takes nothing from is skipped. The steps are the original's checks (of the goods, the coupon
and the balance); the reads serve only to say why an order was refused, as the original would."""
from __future__ import annotations

from decimal import Decimal

from shop.services.coupon.contracts import CouponService, UseCoupon
from shop.services.goods.contracts import Goods, GoodsService, ReduceStock, StockLine
from shop.services.order.contracts import Order
from shop.services.user.contracts import ChangeMoney, MoneyLogType, User, UserService

# Where the fault points of the saga stand (SHOP_FAULTS=1), by step: bootstrap wraps the
# participants with them (infra.faults.with_faults), so that the saga itself carries no hooks.
# A point is reached whether or not its step had anything to take.
FAULTS_BEFORE = {"reduce_stock": ("order.after_pre_order",)}
FAULTS_AFTER = {
    "reduce_stock": ("order.after_reduce_stock",),
    "use_coupon": ("order.after_use_coupon",),
    "pay_from_balance": ("order.after_reduce_money", "order.before_confirm"),
}


class Participants:
    def __init__(self, goods: GoodsService, coupons: CouponService, users: UserService) -> None:
        self.goods = goods
        self.coupons = coupons
        self.users = users

    async def find_user(self, user_id: int) -> User:
        return await self.users.find_user(user_id)

    async def find_goods(self, goods_id: int) -> Goods:
        return await self.goods.find_goods(goods_id)

    async def reduce_stock(self, order: Order) -> None:
        await self.goods.reduce_stock(
            ReduceStock(order.order_id, [StockLine(i.goods_id, i.goods_number, i.goods_price) for i in order.items]))

    async def use_coupon(self, order: Order) -> Decimal | None:
        """The coupon's price, once taken for the order; None without a coupon."""
        if order.coupon_id is None:
            return None
        return await self.coupons.use_coupon(UseCoupon(order.coupon_id, order.user_id, order.order_id))

    async def pay_from_balance(self, order: Order) -> None:
        if order.money_paid > 0:
            await self.users.change_money(
                ChangeMoney(order.user_id, order.order_id, order.money_paid, MoneyLogType.PAID)
            )
